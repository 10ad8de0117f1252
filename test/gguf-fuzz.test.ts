// Property-based tests (fast-check) of the GGUF reader, as test/fuzz.test.ts does for safetensors:
// thousands of GGUF files with bytes of the header overwritten (counts, lengths, dimensions, types
// and offsets hit among them), truncated or cut and spliced, thrown at the parser and at the loader
// up to the kernels. Every outcome is success or an MlaError with a known code: never another
// exception, never a read outside the file, never an allocation beyond what the config states.
// Set FC_SEED to replay a failure.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MlaError, type MlaErrorCode } from '../src/errors.js';
import { parseConfig } from '../src/formats/config.js';
import { parseGguf, type GgufFile } from '../src/formats/gguf.js';
import { writeGguf } from '../src/formats/gguf-write.js';
import { openSource, type ByteFile } from '../src/formats/source.js';
import { Heap } from '../src/host/heap.js';
import { checkMemory, memoryNeed } from '../src/model/memory.js';
import { checkTensors, placeWeights, weightPlan } from '../src/model/weights.js';
import { kernelsFor } from './helpers.js';
import { longRopeScaling, makeRandomCheckpoint, tinyLlamaConfig, tinyMiniCpm3Config, tinyMlaMoeV2Config, tinyPhi3Config, tinyQwen2Config } from './reference/model.js';

const { kernels: KERNELS } = await kernelsFor('simd');
const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const params = (numRuns: number) => ({ numRuns, seed, endOnFailure: true });
const CODES: MlaErrorCode[] = ['BAD_SOURCE', 'BAD_CONFIG', 'BAD_CHECKPOINT', 'UNSUPPORTED_DTYPE', 'MISSING_TENSOR',
  'UNEXPECTED_TENSOR', 'BAD_SHAPE', 'NON_FINITE', 'OUT_OF_MEMORY'];
const MAX_RUN_MS = 2000;

function guarded(bytes: Uint8Array): ByteFile {
  return {
    name: 'f.gguf', size: bytes.length,
    read(position, into) {
      if (!(Number.isSafeInteger(position) && position >= 0 && position + into.length <= bytes.length)) {
        throw new Error(`read of [${position}, ${position + into.length}) outside the file (${bytes.length} bytes)`);
      }
      into.set(bytes.subarray(position, position + into.length));
    },
  };
}

async function outcome(f: () => unknown, codes: readonly MlaErrorCode[]): Promise<string> {
  const t0 = performance.now();
  let got = 'ok';
  try {
    await f();
  } catch (e) {
    if (!(e instanceof MlaError)) throw e;
    if (!codes.includes(e.code)) throw new Error(`unexpected MlaError code ${e.code}: ${e.message}`);
    if (!e.message) throw new Error(`MlaError ${e.code} without a message`);
    got = e.code;
  }
  const ms = performance.now() - t0;
  if (ms > MAX_RUN_MS) throw new Error(`one case took ${ms.toFixed(0)} ms`);
  return got;
}

/** Independent check of every claim a header that parsed makes. */
function expectHonest(g: GgufFile, size: number): void {
  expect(g.dataStart % g.alignment).toBe(0);
  expect(g.dataStart).toBeLessThanOrEqual(size);
  const ranges = [...g.tensors.values()].map((t) => {
    expect(t.begin).toBeGreaterThanOrEqual(g.dataStart);
    expect((t.begin - g.dataStart) % g.alignment).toBe(0);
    expect(t.begin + t.bytes).toBeLessThanOrEqual(size);
    return [t.begin, t.begin + t.bytes] as const;
  }).filter(([b, e]) => e > b).sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBeGreaterThanOrEqual(ranges[i - 1][1]);
}

class TrackingHeap extends Heap {
  blocks: [number, number][] = [];
  allocated = 0;
  override alloc(bytes: number, what?: string): number {
    const ptr = super.alloc(bytes, what);
    this.blocks.push([ptr, bytes]);
    this.allocated += bytes;
    return ptr;
  }
  reset(): void {
    for (const [p, b] of this.blocks) this.release(p, b);
    this.blocks = [];
    this.allocated = 0;
  }
}
const heap = new TrackingHeap();

/** loadModel up to the kernels on a GGUF file map; a load may allocate only the weights the config states. */
async function loadWithoutKernels(bytes: Uint8Array): Promise<void> {
  const src = await openSource({ 'f.gguf': bytes });
  const config = parseConfig(src.config);
  checkMemory(config, KERNELS);
  checkTensors(config, src.tensors);
  // All f32 (every type decoded), then as the file stores it (blocks copied or repacked).
  for (const plan of [weightPlan('f32'), weightPlan('auto', src.tensors)]) {
    const need = memoryNeed(config, KERNELS, { plan });
    heap.reset();
    try {
      placeWeights(config, src.tensors, heap, undefined, plan);
      expect(heap.allocated).toBe(need.weights);
    } finally {
      if (heap.allocated > need.weights) throw new Error(`allocated ${heap.allocated} bytes, the stated need is ${need.weights}`);
      heap.reset();
    }
  }
}

// Fixtures: a MoE MLA model (split layout, Q8_0 with F16 and F32 tensors among it) with the
// fortune-mla tokenizer, a llama model as Q4_0, and the architectures below.
const FORTUNE = new URL('../models/fortune-mla/', import.meta.url);
const tokenizer = {
  tokenizerJson: JSON.parse(readFileSync(new URL('tokenizer.json', FORTUNE), 'utf8')),
  tokenizerConfig: JSON.parse(readFileSync(new URL('tokenizer_config.json', FORTUNE), 'utf8')),
};
async function fixture(config: Record<string, unknown>, type: 'Q8_0' | 'Q4_0'): Promise<Uint8Array> {
  const src = await openSource({ config, tensors: makeRandomCheckpoint(config, 3) });
  return writeGguf(parseConfig(src.config), src.tensors, tokenizer, { type });
}
/**
 * `bytes` (a Q4_0 GGUF) with its Q4_0 tensors retyped in place: rows a multiple of 256 wide
 * alternately Q3_K and IQ4_XS (110 and 136 bytes per 256, within Q4_0's 144), the others IQ4_NL
 * (Q4_0's size); each block's f16 scale set finite, so that the file loads before it is fuzzed.
 */
function retyped(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice(), view = new DataView(out.buffer);
  let k = 0;
  for (const t of parseGguf(guarded(out)).tensors.values()) {
    if (t.type !== 'Q4_0') continue;
    const key = new TextEncoder().encode(t.name);
    let at = -1;
    for (let i = 0; i < out.length && at < 0; i++) {
      if (view.getUint32(i, true) === key.length && view.getUint32(i + 4, true) === 0 && out.subarray(i + 8, i + 8 + key.length).every((b, j) => b === key[j])) at = i;
    }
    const typeAt = at + 8 + key.length + 4 + 8 * t.ne.length;
    const [id, size, dAt] = t.ne[0] % 256 ? [20, 18, 0] : k++ % 2 ? [23, 136, 0] : [11, 110, 108];
    view.setUint32(typeAt, id, true);
    const n = t.ne.reduce((a, b) => a * b, 1);
    for (let b = 0; b < n / (id === 20 ? 32 : 256); b++) view.setUint16(t.begin + b * size + dAt, 0x2c00 + (b % 512), true);
  }
  return out;
}
const FILES = [
  await fixture(tinyMlaMoeV2Config({ vocab_size: 264, num_hidden_layers: 2, max_position_embeddings: 16, kv_lora_rank: 32, qk_nope_head_dim: 32 }), 'Q8_0'),
  await fixture(tinyLlamaConfig({ vocab_size: 264, hidden_size: 64, head_dim: 32, max_position_embeddings: 16 }), 'Q4_0'),
  // The architectures whose rope scaling or biases live in tensors of their own: rope_freqs
  // (llama3), rope_factors_short (minicpm3), q/k/v biases (qwen2), fused matrices (phi3).
  await fixture(tinyLlamaConfig({ vocab_size: 264, hidden_size: 64, head_dim: 32, max_position_embeddings: 16,
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }), 'Q8_0'),
  await fixture(tinyMiniCpm3Config({ vocab_size: 264, max_position_embeddings: 16, dim_model_base: 256,
    rope_scaling: { rope_type: 'longrope', original_max_position_embeddings: 16, short_factor: [1, 1.5, 3, 12], long_factor: [1, 2, 8, 32] } }), 'Q4_0'),
  await fixture(tinyQwen2Config({ vocab_size: 264, hidden_size: 64, head_dim: 32, max_position_embeddings: 16 }), 'Q8_0'),
  // phi3: attn_qkv and ffn_up split by rows, rope_factors_long / _short, attn_factor, partial rotary.
  await fixture(tinyPhi3Config({ vocab_size: 264, hidden_size: 64, head_dim: 32, max_position_embeddings: 16, original_max_position_embeddings: 8,
    partial_rotary_factor: 0.5, rope_scaling: longRopeScaling(16) }), 'Q4_0'),
  // Q3_K, IQ4_XS and IQ4_NL, read as Q6_K super-blocks and q8 blocks.
  retyped(await fixture(tinyLlamaConfig({ vocab_size: 264, hidden_size: 256, intermediate_size: 288, head_dim: 64, max_position_embeddings: 16 }), 'Q4_0')),
];
const headerEnd = (bytes: Uint8Array) => parseGguf(guarded(bytes)).dataStart;

type Edit =
  | { k: 'byte'; at: number; v: number }
  | { k: 'u32'; at: number; v: number }
  | { k: 'u64'; at: number; v: bigint };

const hostile64 = fc.oneof(
  fc.constantFrom(0n, 1n, 2n, 3n, 4n, 5n, 32n, 2n ** 31n, 2n ** 32n, 2n ** 32n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fc.bigInt({ min: 0n, max: 100000n }),
);
const edit = (span: number): fc.Arbitrary<Edit> => fc.oneof(
  fc.record({ k: fc.constant('byte' as const), at: fc.nat(span - 1), v: fc.nat(255) }),
  fc.record({ k: fc.constant('u32' as const), at: fc.nat(span - 4), v: fc.oneof(fc.constantFrom(0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 20, 21, 23, 30, 99, 0xffffffff), fc.nat()) }),
  fc.record({ k: fc.constant('u64' as const), at: fc.nat(span - 8), v: hostile64 }),
);

function applyEdits(file: Uint8Array, edits: Edit[]): Uint8Array {
  const out = file.slice();
  const view = new DataView(out.buffer);
  for (const e of edits) {
    if (e.k === 'byte') out[e.at] = e.v;
    else if (e.k === 'u32') view.setUint32(e.at, e.v, true);
    else view.setBigUint64(e.at, e.v, true);
  }
  return out;
}

describe('GGUF fuzz', () => {
  it('the fixtures load as they are; the last holds Q3_K, IQ4_XS and IQ4_NL', async () => {
    for (const file of FILES) expect(await outcome(() => loadWithoutKernels(file), CODES)).toBe('ok');
    const types = new Set([...parseGguf(guarded(FILES[FILES.length - 1])).tensors.values()].map((t) => t.type));
    expect([...types].sort()).toEqual(['F32', 'IQ4_NL', 'IQ4_XS', 'Q3_K', 'Q8_0']);
  });

  it('header bytes overwritten: the parser succeeds honestly or throws BAD_CHECKPOINT, reading only inside the file', async () => {
    const seen = new Set<string>();
    for (const file of FILES) {
      const span = headerEnd(file);
      await fc.assert(fc.asyncProperty(fc.array(edit(span), { minLength: 1, maxLength: 4 }), async (edits) => {
        const bytes = applyEdits(file, edits);
        let g: GgufFile | undefined;
        const got = await outcome(() => { g = parseGguf(guarded(bytes)); }, ['BAD_CHECKPOINT']);
        seen.add(got);
        if (got === 'ok') expectHonest(g!, bytes.length);
      }), params(1500));
    }
    expect([...seen].sort()).toEqual(['BAD_CHECKPOINT', 'ok']);
  });

  it('header bytes overwritten: the loader (up to the kernels) succeeds or throws a known code, allocating no more than stated', async () => {
    const seen = new Set<string>();
    for (const file of FILES) {
      const span = headerEnd(file);
      await fc.assert(fc.asyncProperty(fc.array(edit(span), { minLength: 1, maxLength: 3 }), async (edits) => {
        seen.add(await outcome(() => loadWithoutKernels(applyEdits(file, edits)), CODES));
      }), params(400));
    }
    // The edits reach past the parser: config, tokenizer and shape checks are exercised too.
    expect(seen.size).toBeGreaterThanOrEqual(4);
  });

  it('truncated, cut and spliced, or extended files', async () => {
    for (const file of FILES) {
      await fc.assert(fc.asyncProperty(fc.nat(file.length), fc.nat(file.length), fc.nat(64), async (a, b, extra) => {
        const [lo, hi] = a < b ? [a, b] : [b, a];
        const cases = [file.subarray(0, lo), new Uint8Array([...file.subarray(0, lo), ...file.subarray(hi)]),
          new Uint8Array([...file, ...new Uint8Array(extra).fill(0xab)])];
        for (const bytes of cases) {
          const got = await outcome(() => parseGguf(guarded(bytes)), ['BAD_CHECKPOINT']);
          if (got === 'ok') expectHonest(parseGguf(guarded(bytes)), bytes.length);
          await outcome(() => loadWithoutKernels(bytes), CODES);
        }
      }), params(60));
    }
  });

  it('bit flips anywhere: data flips load (finite or NON_FINITE), header flips are caught', async () => {
    // The MoE Q8_0 file, and the repacked types' (a flipped scale must be caught as NON_FINITE there too).
    for (const file of [FILES[0], FILES[FILES.length - 1]]) {
      await fc.assert(fc.asyncProperty(fc.array(fc.tuple(fc.nat(file.length * 8 - 1)), { minLength: 1, maxLength: 8 }), async (flips) => {
        const bytes = file.slice();
        for (const [bit] of flips) bytes[bit >> 3] ^= 1 << (bit & 7);
        await outcome(() => loadWithoutKernels(bytes), CODES);
      }), params(150));
    }
  });
});
