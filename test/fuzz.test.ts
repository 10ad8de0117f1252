// Property-based tests (fast-check): thousands of mutated safetensors headers, truncated and
// bit-flipped files (the real fortune-mla checkpoint among them), mutated shard indexes and
// mutated or bit-flipped config.json, thrown at the header parser and at the loader. Every outcome
// is either success or an MlaError with a known code: never another exception, never a read
// outside a file, never an allocation beyond the need the config states.
//
// The loader runs as loadModel does up to the kernels (openSource → parseConfig → checkMemory →
// checkTensors → placeWeights into a Heap), so thousands of runs need no kernel instances; one
// property runs loadModel itself on a smaller number of cases.
// Set FC_SEED to replay a failure (fast-check prints the seed and path).
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/formats/config.js';
import { MlaError, type MlaErrorCode } from '../src/errors.js';
import { Heap } from '../src/host/heap.js';
import { checkMemory, memoryNeed } from '../src/model/memory.js';
import { kernelsFor } from './helpers.js';

// The kernels answer how much scratch they need; the loader asks them before allocating.
const { kernels: KERNELS } = await kernelsFor('simd');
import { loadModel } from '../src/generate/model.js';
import { elementCount, parseSafetensorsHeader, readTensorF32At, dtypeBytes, type SafetensorsHeader } from '../src/formats/safetensors.js';
import { openSource, safetensorsFilesSource, safetensorsSource, type ByteFile, type ModelSource } from '../src/formats/source.js';
import { checkTensors, placeWeights, weightBytes, weightPlan } from '../src/model/weights.js';
import type { TensorSource } from '../src/formats/tensor-source.js';
import { longRopeScaling, makeRandomCheckpoint, tinyLlamaConfig, tinyMiniCpm3Config, tinyMistralConfig, tinyMlaConfig, tinyPhi3Config, tinyQwen2Config } from './reference/model.js';
import { writeSafetensors, writeShardedSafetensors, type FloatDtype } from './reference/safetensors-writer.js';

const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const params = (numRuns: number) => ({ numRuns, seed, endOnFailure: true });

const LOAD_CODES: MlaErrorCode[] = ['BAD_SOURCE', 'BAD_CONFIG', 'BAD_CHECKPOINT', 'UNSUPPORTED_DTYPE', 'MISSING_TENSOR',
  'UNEXPECTED_TENSOR', 'BAD_SHAPE', 'NON_FINITE', 'OUT_OF_MEMORY'];

/** No single case may take this long: a slow case is a hang in the making (runs take about a millisecond). */
const MAX_RUN_MS = 2000;

function judge(e: unknown, codes: readonly MlaErrorCode[]): string {
  if (!(e instanceof MlaError)) throw e;
  if (!codes.includes(e.code)) throw new Error(`unexpected MlaError code ${e.code}: ${e.message}`);
  if (!e.message) throw new Error(`MlaError ${e.code} without a message`);
  return e.code;
}

function checkTime(t0: number): void {
  const ms = performance.now() - t0;
  if (ms > MAX_RUN_MS) throw new Error(`one case took ${ms.toFixed(0)} ms`);
}

/** 'ok', or the code of the MlaError thrown; any other exception propagates (and fails the property). */
function outcome(f: () => void, codes: readonly MlaErrorCode[] = LOAD_CODES): string {
  const t0 = performance.now();
  let got: string;
  try {
    f();
    got = 'ok';
  } catch (e) {
    got = judge(e, codes);
  }
  checkTime(t0);
  return got;
}

async function outcomeAsync(f: () => Promise<unknown>, codes: readonly MlaErrorCode[] = LOAD_CODES): Promise<string> {
  const t0 = performance.now();
  let got: string;
  try {
    await f();
    got = 'ok';
  } catch (e) {
    got = judge(e, codes);
  }
  checkTime(t0);
  return got;
}

/** A heap that records its blocks, so one heap serves thousands of runs and allocations can be audited. */
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

/** A file whose reads fail the property (not with an MlaError) if they ever reach outside it. */
function guardedFile(name: string, bytes: Uint8Array): ByteFile {
  return {
    name,
    size: bytes.length,
    read(position, into) {
      if (!(Number.isSafeInteger(position) && position >= 0 && position + into.length <= bytes.length)) {
        throw new Error(`read of [${position}, ${position + into.length}) outside ${name} (${bytes.length} bytes)`);
      }
      into.set(bytes.subarray(position, position + into.length));
    },
  };
}

/**
 * The loader up to the kernels, on a config object and a tensor source: what loadModel does before
 * loadKernels, then placeWeights into the shared heap. Checks that nothing beyond the stated
 * need is allocated, and that a successful load allocated exactly the weights.
 */
function loadWithoutKernels(configJson: unknown, tensors: () => TensorSource): void {
  const config = parseConfig(configJson);
  checkMemory(config, KERNELS);
  const src = tensors();
  checkTensors(config, src);
  const need = memoryNeed(config, KERNELS);
  heap.reset();
  try {
    placeWeights(config, src, heap);
    expect(heap.allocated).toBe(need.weights);
  } finally {
    if (heap.allocated > need.weights) throw new Error(`allocated ${heap.allocated} bytes, the stated need is ${need.weights}`);
    heap.reset();
  }
}

/** Same, through openSource on a file map (the path loadModel takes). */
async function loadFilesWithoutKernels(files: ModelSource): Promise<void> {
  const src = await openSource(files);
  loadWithoutKernels(src.config, () => src.tensors);
}

/** Independent check of every claim a header that parsed makes. */
function expectHeaderHonest(h: SafetensorsHeader, fileSize: number): void {
  const ranges: [number, number][] = [];
  for (const t of h.tensors.values()) {
    expect(t.begin).toBeGreaterThanOrEqual(h.dataStart);
    expect(t.end).toBeLessThanOrEqual(fileSize);
    expect(t.begin).toBeLessThanOrEqual(t.end);
    const size = dtypeBytes(t.dtype);
    if (size !== undefined) expect(t.end - t.begin).toBe(elementCount(t.shape) * size);
    if (t.end > t.begin) ranges.push([t.begin, t.end]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) expect(ranges[i][0]).toBeGreaterThanOrEqual(ranges[i - 1][1]);
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const enc = (x: unknown) => new TextEncoder().encode(typeof x === 'string' ? x : JSON.stringify(x));
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const FORTUNE = new URL('../models/fortune-mla/', import.meta.url);
const fortuneFile = new Uint8Array(readFileSync(new URL('model.safetensors', FORTUNE)));
const fortuneConfigBytes = new Uint8Array(readFileSync(new URL('config.json', FORTUNE)));
const fortuneConfig = JSON.parse(dec(fortuneConfigBytes));
const fortuneHeader = parseSafetensorsHeader(fortuneFile);

// A tiny checkpoint with F32, F16 and BF16 tensors, so every conversion path is fuzzed.
const tinyConfig = tinyMlaConfig({ num_hidden_layers: 1, vocab_size: 16, max_position_embeddings: 16 });
const tinyTensors = makeRandomCheckpoint(tinyConfig, 9);
const DTYPES: FloatDtype[] = ['F32', 'F16', 'BF16'];
const tinyFile = writeSafetensors(Object.fromEntries(Object.entries(tinyTensors).map(([n, t], i) => [n, { ...t, dtype: DTYPES[i % 3] }])));
const tinyConfigBytes = enc(tinyConfig);

function splitFile(file: Uint8Array): { header: Record<string, any>; data: Uint8Array; len: number } {
  const len = new DataView(file.buffer, file.byteOffset).getUint32(0, true);
  return { header: JSON.parse(dec(file.subarray(8, 8 + len))), data: file.subarray(8 + len), len };
}

// ---------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------

/** Values a corrupt or hostile JSON field might hold. */
const weirdValue = fc.oneof(
  fc.integer({ min: -3, max: 70000 }),
  fc.constantFrom(0, 1, -1, 0.5, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e300, -1e300, 1e-300),
  fc.string({ maxLength: 6 }),
  fc.constantFrom(null, true, false, [], {}),
  fc.jsonValue({ maxDepth: 2 }),
);

const dtypeName = fc.oneof(
  fc.constantFrom('F32', 'F16', 'BF16', 'F64', 'I64', 'I32', 'U8', 'BOOL', 'F8_E4M3', 'F8_E5M2', 'f32', '', 'Q4_K'),
  fc.string({ maxLength: 5 }),
);

type HeaderEdit =
  | { k: 'dtype'; t: number; v: unknown }
  | { k: 'shape'; t: number; v: unknown }
  | { k: 'dim'; t: number; d: number; delta: number }
  | { k: 'offsets'; t: number; v: unknown }
  | { k: 'shift'; t: number; b: number; e: number }
  | { k: 'copyOffsets'; from: number; to: number }
  | { k: 'swapOffsets'; a: number; b: number }
  | { k: 'delete'; t: number }
  | { k: 'deleteField'; t: number; f: string }
  | { k: 'rename'; t: number; name: string }
  | { k: 'add'; name: string; v: unknown }
  | { k: 'entry'; t: number; v: unknown }
  | { k: 'metadata'; v: unknown };

const idx = fc.nat(1000);
const headerEdit: fc.Arbitrary<HeaderEdit> = fc.oneof(
  fc.record({ k: fc.constant('dtype' as const), t: idx, v: fc.oneof(dtypeName, weirdValue) }),
  fc.record({ k: fc.constant('shape' as const), t: idx, v: fc.oneof(fc.array(fc.oneof(fc.nat(300), weirdValue), { maxLength: 5 }), weirdValue) }),
  fc.record({ k: fc.constant('dim' as const), t: idx, d: fc.nat(3), delta: fc.integer({ min: -4, max: 4 }) }),
  fc.record({ k: fc.constant('offsets' as const), t: idx, v: fc.oneof(fc.tuple(fc.integer({ min: -8, max: 40000 }), fc.integer({ min: -8, max: 40000 })), fc.array(weirdValue, { maxLength: 3 }), weirdValue) }),
  fc.record({ k: fc.constant('shift' as const), t: idx, b: fc.integer({ min: -64, max: 64 }), e: fc.integer({ min: -64, max: 64 }) }),
  fc.record({ k: fc.constant('copyOffsets' as const), from: idx, to: idx }),
  fc.record({ k: fc.constant('swapOffsets' as const), a: idx, b: idx }),
  fc.record({ k: fc.constant('delete' as const), t: idx }),
  fc.record({ k: fc.constant('deleteField' as const), t: idx, f: fc.constantFrom('dtype', 'shape', 'data_offsets') }),
  fc.record({ k: fc.constant('rename' as const), t: idx, name: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__metadata__', '__proto__', 'constructor', 'model.norm.weight')) }),
  fc.record({ k: fc.constant('add' as const), name: fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('__proto__', 'lm_head.weight')), v: fc.oneof(weirdValue, fc.record({ dtype: dtypeName, shape: fc.array(fc.nat(8), { maxLength: 3 }), data_offsets: fc.tuple(fc.nat(40000), fc.nat(40000)) })) }),
  fc.record({ k: fc.constant('entry' as const), t: idx, v: weirdValue }),
  fc.record({ k: fc.constant('metadata' as const), v: fc.oneof(weirdValue, fc.dictionary(fc.string({ maxLength: 4 }), weirdValue, { maxKeys: 3 })) }),
);

function applyEdit(h: Record<string, any>, m: HeaderEdit): void {
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  if (!names.length && m.k !== 'add' && m.k !== 'metadata') return;
  const pick = (i: number) => names[i % names.length];
  const entry = (i: number) => {
    const e = h[pick(i)];
    return typeof e === 'object' && e !== null && !Array.isArray(e) ? e : null;
  };
  switch (m.k) {
    case 'dtype': { const e = entry(m.t); if (e) e.dtype = m.v; break; }
    case 'shape': { const e = entry(m.t); if (e) e.shape = m.v; break; }
    case 'dim': { const e = entry(m.t); if (e && Array.isArray(e.shape) && e.shape.length) e.shape[m.d % e.shape.length] += m.delta; break; }
    case 'offsets': { const e = entry(m.t); if (e) e.data_offsets = m.v; break; }
    case 'shift': { const e = entry(m.t); if (e && Array.isArray(e.data_offsets)) e.data_offsets = [e.data_offsets[0] + m.b, e.data_offsets[1] + m.e]; break; }
    case 'copyOffsets': { const a = entry(m.from), b = entry(m.to); if (a && b) b.data_offsets = a.data_offsets; break; }
    case 'swapOffsets': { const a = entry(m.a), b = entry(m.b); if (a && b) [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets]; break; }
    case 'delete': delete h[pick(m.t)]; break;
    case 'deleteField': { const e = entry(m.t); if (e) delete e[m.f]; break; }
    case 'rename': { const n = pick(m.t); const v = h[n]; delete h[n]; Object.defineProperty(h, m.name, { value: v, enumerable: true, configurable: true, writable: true }); break; }
    case 'add': Object.defineProperty(h, m.name, { value: m.v, enumerable: true, configurable: true, writable: true }); break;
    case 'entry': h[pick(m.t)] = m.v; break;
    case 'metadata': h.__metadata__ = m.v; break;
  }
}

/** The 8-byte header length: the true one, off by a little, or any 64-bit pattern. */
const lengthField = fc.oneof(
  { weight: 8, arbitrary: fc.constant({ k: 'exact' as const }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('delta' as const), d: fc.integer({ min: -40, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('raw' as const), lo: fc.nat(0xffffffff), hi: fc.oneof(fc.constant(0), fc.nat(0xffffffff)) }) },
);

/** What happens to the data section: nothing, truncated, or extended. */
const dataEdit = fc.oneof(
  { weight: 10, arbitrary: fc.constant({ k: 'keep' as const }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('cut' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('extend' as const), n: fc.nat(64) }) },
);

type LengthField = { k: 'exact' } | { k: 'delta'; d: number } | { k: 'raw'; lo: number; hi: number };
type DataEdit = { k: 'keep' } | { k: 'cut'; at: number } | { k: 'extend'; n: number };

function rebuild(file: Uint8Array, edits: HeaderEdit[], lenField: LengthField, dataMod: DataEdit, textEdit?: (s: string) => string): Uint8Array {
  const { header, data } = splitFile(file);
  // fast-check hands out one object for a constant such as `{}` wherever it appears: each edit gets
  // its own copy, or putting one inside a header entry can make that entry contain itself.
  for (const m of edits) applyEdit(header, structuredClone(m));
  let json = JSON.stringify(header);
  if (textEdit) json = textEdit(json);
  const h = enc(json);
  let d = data;
  if (dataMod.k === 'cut') d = data.subarray(0, Math.floor(dataMod.at * data.length));
  if (dataMod.k === 'extend') { d = new Uint8Array(data.length + dataMod.n); d.set(data); }
  const out = new Uint8Array(8 + h.length + d.length);
  const v = new DataView(out.buffer);
  if (lenField.k === 'raw') { v.setUint32(0, lenField.lo, true); v.setUint32(4, lenField.hi, true); }
  else v.setUint32(0, Math.max(0, h.length + (lenField.k === 'delta' ? lenField.d : 0)), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

/** Text-level damage to the header JSON: a character replaced, inserted or deleted. */
const textEdit = fc.oneof(
  { weight: 3, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), op: fc.constantFrom('replace', 'insert', 'delete'), ch: fc.constantFrom(...'{}[]",:0123456789-.eE \\u\u00e9'.split(''), '\u0000', '\ud800') }) },
)
  .map((t) => t && ((s: string) => {
    const i = Math.floor(t.at * s.length);
    return t.op === 'delete' ? s.slice(0, i) + s.slice(i + 1) : s.slice(0, i) + t.ch + s.slice(i + (t.op === 'replace' ? 1 : 0));
  }));

// ---------------------------------------------------------------------------------------------

describe('fuzzing safetensors headers', () => {
  it('mutated headers (dtypes, shapes, offsets, overlaps, names, lengths, JSON text): parse or BAD_CHECKPOINT; what parses is honest and reads in bounds', () => {
    const seen = new Map<string, number>();
    fc.assert(fc.property(fc.array(headerEdit, { minLength: 0, maxLength: 4 }), lengthField, dataEdit, textEdit, (edits, len, data, text) => {
      const file = rebuild(tinyFile, edits, len, data, text ?? undefined);
      let header: SafetensorsHeader | undefined;
      const parsed = outcome(() => { header = parseSafetensorsHeader(file, 'fuzz.safetensors'); }, ['BAD_CHECKPOINT']);
      seen.set(parsed, (seen.get(parsed) ?? 0) + 1);
      if (!header) return;
      expectHeaderHonest(header, file.length);
      const f = guardedFile('fuzz.safetensors', file);
      for (const t of header.tensors.values()) {
        outcome(() => readTensorF32At((p, into) => f.read(p, into), t, new Float32Array(elementCount(t.shape)), f.name), ['UNSUPPORTED_DTYPE']);
      }
    }), params(3000));
    // The mutations reach both outcomes often (not all rejected at the first byte, not all accepted).
    expect(seen.get('ok') ?? 0).toBeGreaterThan(150);
    expect(seen.get('BAD_CHECKPOINT') ?? 0).toBeGreaterThan(1000);
  });

  it('the same mutated headers at the loader (file map → placed weights): success or a known MlaError, no read outside a file, no allocation beyond the need', async () => {
    const seen = new Map<string, number>();
    await fc.assert(fc.asyncProperty(fc.array(headerEdit, { minLength: 0, maxLength: 3 }), lengthField, dataEdit, async (edits, len, data) => {
      const file = rebuild(tinyFile, edits, len, data);
      const viaMap = await outcomeAsync(() => loadFilesWithoutKernels({ 'config.json': tinyConfigBytes, 'model.safetensors': file }));
      // Same file, guarded against out-of-bounds reads.
      const guarded = outcome(() => loadWithoutKernels(tinyConfig, () => safetensorsFilesSource([guardedFile('model.safetensors', file)])));
      expect(guarded).toBe(viaMap);
      seen.set(viaMap, (seen.get(viaMap) ?? 0) + 1);
    }), params(3000));
    expect(seen.get('ok') ?? 0).toBeGreaterThan(200);
    expect(seen.size).toBeGreaterThan(3); // several different codes reached
  });

  it('truncated real checkpoint: always BAD_CHECKPOINT, parsed alone or loaded', async () => {
    await fc.assert(fc.asyncProperty(fc.nat(fortuneFile.length - 1), async (cut) => {
      const file = fortuneFile.subarray(0, cut);
      expect(outcome(() => parseSafetensorsHeader(file), ['BAD_CHECKPOINT'])).toBe('BAD_CHECKPOINT');
      const got = await outcomeAsync(() => loadFilesWithoutKernels({ 'config.json': fortuneConfigBytes, 'model.safetensors': file }));
      expect(got).toBe('BAD_CHECKPOINT');
    }), params(1000));
  });

  it('bit flips anywhere in the real checkpoint (mostly in its header): success or a known MlaError at the parser and the loader', async () => {
    const seen = new Map<string, number>();
    const dataFloats = (fortuneFile.length - fortuneHeader.dataStart) / 4;
    const flip = fc.oneof(
      { weight: 3, arbitrary: fc.record({ at: fc.nat(fortuneHeader.dataStart - 1), bit: fc.nat(7) }) },
      { weight: 2, arbitrary: fc.record({ at: fc.nat(fortuneFile.length - 1), bit: fc.nat(7) }) },
      // The exponent bits of one float (bits 23–30: bit 7 of byte 2, bits 0–6 of byte 3): all of them
      // set turns the value into ±Inf or NaN.
      { weight: 1, arbitrary: fc.nat(dataFloats - 1).chain((k) => fc.constant([0, 1, 2, 3, 4, 5, 6, 7].map((b) => ({
        at: fortuneHeader.dataStart + 4 * k + (b === 0 ? 2 : 3), bit: b === 0 ? 7 : b - 1,
      })))) },
    );
    const file = fortuneFile.slice(); // flipped in place and restored after each run
    await fc.assert(fc.asyncProperty(fc.array(flip, { minLength: 1, maxLength: 4 }), async (flipSets) => {
      const flips = flipSets.flat();
      const exponentAllOnes = flipSets.some((f) => Array.isArray(f));
      // Set the exponent (rather than flip it) for the 'poison' sets, remembering the old bytes.
      const saved = flips.map((f) => file[f.at]);
      for (const set of flipSets) {
        if (Array.isArray(set)) for (const f of set) file[f.at] |= 1 << f.bit;
        else file[set.at] ^= 1 << set.bit;
      }
      try {
        outcome(() => parseSafetensorsHeader(file), ['BAD_CHECKPOINT']);
        const got = await outcomeAsync(() => loadFilesWithoutKernels({ 'config.json': fortuneConfigBytes, 'model.safetensors': file }));
        seen.set(got, (seen.get(got) ?? 0) + 1);
        // Damage in the data section alone changes values: it loads, or is NaN/Inf (NON_FINITE).
        if (flips.every((f) => f.at >= fortuneHeader.dataStart)) {
          expect(['ok', 'NON_FINITE']).toContain(got);
          if (exponentAllOnes) expect(got).toBe('NON_FINITE');
        }
      } finally {
        for (let i = flips.length - 1; i >= 0; i--) file[flips[i].at] = saved[i];
      }
    }), params(2000));
    expect(seen.get('BAD_CHECKPOINT') ?? 0).toBeGreaterThan(500);
    expect(seen.get('ok') ?? 0).toBeGreaterThan(50);
    expect(seen.get('NON_FINITE') ?? 0).toBeGreaterThan(20);
    expect(Buffer.from(file).equals(Buffer.from(fortuneFile))).toBe(true); // every run restored it
  });
});

// ---------------------------------------------------------------------------------------------

const CONFIG_KEYS = [...Object.keys(fortuneConfig), 'rope_scaling', 'head_dim', 'architectures'];
const ROPE_KEYS = ['type', 'rope_type', 'factor', 'original_max_position_embeddings', 'beta_fast', 'beta_slow', 'mscale', 'mscale_all_dim'];

type ConfigEdit = { k: 'set'; key: string; v: unknown } | { k: 'delete'; key: string } | { k: 'nudge'; key: string; by: number } | { k: 'rope'; key: string; v: unknown };
const configEdit: fc.Arbitrary<ConfigEdit> = fc.oneof(
  fc.record({ k: fc.constant('set' as const), key: fc.oneof(fc.constantFrom(...CONFIG_KEYS), fc.string({ maxLength: 6 })), v: weirdValue }),
  fc.record({ k: fc.constant('delete' as const), key: fc.constantFrom(...CONFIG_KEYS) }),
  fc.record({ k: fc.constant('nudge' as const), key: fc.constantFrom(...CONFIG_KEYS), by: fc.integer({ min: -2, max: 2 }) }),
  fc.record({ k: fc.constant('rope' as const), key: fc.constantFrom(...ROPE_KEYS), v: fc.oneof(weirdValue, fc.constantFrom('yarn', 'linear')) }),
);

function applyConfigEdits(base: Record<string, unknown>, edits: ConfigEdit[]): Record<string, unknown> {
  const c: Record<string, any> = structuredClone(base);
  // Each edit's own copy, as in rebuild(): the rope edits change rope_scaling in place, and it may
  // hold a value fast-check shares between runs.
  for (const m of edits.map((e) => structuredClone(e))) {
    if (m.k === 'set') Object.defineProperty(c, m.key, { value: m.v, enumerable: true, configurable: true, writable: true });
    else if (m.k === 'delete') delete c[m.key];
    else if (m.k === 'nudge') { if (typeof c[m.key] === 'number') c[m.key] += m.by; }
    else {
      if (typeof c.rope_scaling !== 'object' || c.rope_scaling === null) c.rope_scaling = { type: 'yarn', factor: 4, original_max_position_embeddings: 256 };
      c.rope_scaling[m.key] = m.v;
    }
  }
  return c;
}

describe('fuzzing config.json', () => {
  it('config edits copy the values they write: a shared fast-check constant is never mutated', () => {
    // fast-check hands out one object for a constant such as `{}` to every run. Written into
    // rope_scaling and then edited in place, it once became { type: itself }, and a later run's
    // JSON.stringify of a config holding it threw "Converting circular structure to JSON".
    const shared = {};
    const config = applyConfigEdits(fortuneConfig, [{ k: 'set', key: 'rope_scaling', v: shared }, { k: 'rope', key: 'type', v: shared }]);
    expect(shared).toEqual({});
    expect(JSON.parse(JSON.stringify(config)).rope_scaling).toEqual({ type: {} });
  });

  it('mutated config objects (JSON and non-JSON values) at parseConfig + checkTensors against the real header', () => {
    const header = fortuneHeader;
    const src: TensorSource = {
      names: () => header.tensors.keys(),
      shape: (n) => header.tensors.get(n)?.shape,
      read: () => { throw new Error('not read here'); },
    };
    const anyValue = fc.oneof(weirdValue, fc.constantFrom(NaN, Infinity, -Infinity, undefined, 10n), fc.anything({ maxDepth: 1 }));
    const seen = new Map<string, number>();
    fc.assert(fc.property(fc.array(fc.oneof(configEdit, fc.record({ k: fc.constant('set' as const), key: fc.constantFrom(...CONFIG_KEYS), v: anyValue })), { minLength: 1, maxLength: 4 }), (edits) => {
      const config = applyConfigEdits(fortuneConfig, edits);
      const got = outcome(() => {
        const c = parseConfig(config);
        checkMemory(c, KERNELS);
        checkTensors(c, src);
      });
      seen.set(got, (seen.get(got) ?? 0) + 1);
    }), params(3000));
    expect(seen.get('ok') ?? 0).toBeGreaterThan(100);
    expect(seen.get('BAD_CONFIG') ?? 0).toBeGreaterThan(500);
    expect(seen.has('BAD_SHAPE') || seen.has('MISSING_TENSOR') || seen.has('UNEXPECTED_TENSOR')).toBe(true);
  });

  it('the rope scalings of Llama (linear, llama3, rope_freq_factors), MiniCPM3 and Phi-3 (longrope), Mistral\'s window, mutated: parsed or BAD_CONFIG', () => {
    const bases = [
      tinyLlamaConfig({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }),
      tinyLlamaConfig({ rope_freq_factors: [1, 1, 2, 2, 4, 4, 8, 8] }),
      tinyMiniCpm3Config(),
      tinyQwen2Config(),
      tinyPhi3Config({ rope_scaling: longRopeScaling(16), sliding_window: 64 }),
      tinyPhi3Config({ partial_rotary_factor: 0.5, rope_scaling: longRopeScaling(8) }),
      tinyMistralConfig(),
    ];
    const keys = ['type', 'rope_type', 'factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings', 'short_factor', 'long_factor', 'attention_factor'];
    const ropeEdit = fc.oneof(
      fc.record({ key: fc.constantFrom(...keys), v: fc.oneof(weirdValue, fc.constantFrom('linear', 'llama3', 'longrope', 'dynamic', 'default'),
        fc.array(fc.oneof(fc.double(), fc.integer()), { maxLength: 9 })) }),
      fc.record({ key: fc.constantFrom('rope_freq_factors', 'rope_scaling', 'max_position_embeddings', 'head_dim', 'qk_rope_head_dim', 'scale_emb', 'scale_depth', 'dim_model_base', 'use_sliding_window',
        'sliding_window', 'partial_rotary_factor', 'original_max_position_embeddings'),
        v: fc.oneof(weirdValue, fc.array(fc.oneof(fc.double(), fc.integer()), { maxLength: 9 })), top: fc.constant(true) }),
    );
    const seen = new Map<string, number>();
    fc.assert(fc.property(fc.nat(bases.length - 1), fc.array(ropeEdit, { minLength: 1, maxLength: 3 }), (b, edits) => {
      const c: Record<string, any> = structuredClone(bases[b]);
      for (const e of edits.map((x) => structuredClone(x))) {
        if ('top' in e) c[e.key] = e.v;
        else {
          if (typeof c.rope_scaling !== 'object' || c.rope_scaling === null) c.rope_scaling = {};
          c.rope_scaling[e.key] = e.v;
        }
      }
      const got = outcome(() => {
        const parsed = parseConfig(c);
        // What parses is usable: finite positive factors, one per rotary frequency.
        const f = parsed.ropeFreqFactors, a = parsed.attention;
        if (f) expect(f.every((x) => Number.isFinite(x) && x > 0)).toBe(true);
        // …as many as the rotary dims have frequencies; a positive finite cos/sin factor; a context ≥ 1.
        if (f && a.kind === 'gqa') expect(f.length).toBe((a.rotaryDim ?? a.headDim) / 2);
        if (parsed.ropeAttnFactor !== undefined) expect(parsed.ropeAttnFactor > 0 && Number.isFinite(parsed.ropeAttnFactor)).toBe(true);
        expect(Number.isInteger(parsed.maxPositions) && parsed.maxPositions >= 1).toBe(true);
      });
      seen.set(got, (seen.get(got) ?? 0) + 1);
    }), params(2000));
    expect(seen.get('ok') ?? 0).toBeGreaterThan(50);
    expect(seen.get('BAD_CONFIG') ?? 0).toBeGreaterThan(500);
  });

  it('bit-flipped and mutated config.json bytes at the loader (file map with the real weights)', async () => {
    const seen = new Map<string, number>();
    const bytesEdit = fc.oneof(
      fc.array(fc.record({ at: fc.nat(fortuneConfigBytes.length - 1), bit: fc.nat(7) }), { minLength: 1, maxLength: 4 })
        .map((flips) => { const b = fortuneConfigBytes.slice(); for (const f of flips) b[f.at] ^= 1 << f.bit; return b; }),
      fc.array(configEdit, { minLength: 1, maxLength: 3 }).map((edits) => enc(applyConfigEdits(fortuneConfig, edits))),
      fc.nat(fortuneConfigBytes.length).map((cut) => fortuneConfigBytes.subarray(0, cut)),
    );
    await fc.assert(fc.asyncProperty(bytesEdit, async (configBytes) => {
      const got = await outcomeAsync(() => loadFilesWithoutKernels({ 'config.json': configBytes, 'model.safetensors': fortuneFile }));
      seen.set(got, (seen.get(got) ?? 0) + 1);
    }), params(2000));
    expect(seen.get('ok') ?? 0).toBeGreaterThan(100);
    expect(seen.get('BAD_CONFIG') ?? 0).toBeGreaterThan(500);
  });
});

// ---------------------------------------------------------------------------------------------

describe('fuzzing shard indexes', () => {
  const shards = writeShardedSafetensors(tinyTensors, 3);
  const shardNames = Object.keys(shards).filter((f) => f.endsWith('.safetensors'));
  const baseIndex = JSON.parse(dec(shards['model.safetensors.index.json']));
  const tensorNames = Object.keys(baseIndex.weight_map);
  let baseline: Uint8Array;

  type IndexEdit = { k: 'remap'; t: number; to: unknown } | { k: 'unlist'; t: number } | { k: 'list'; name: string; to: number }
    | { k: 'dropFile'; f: number } | { k: 'swapFiles'; a: number; b: number } | { k: 'dupFile'; from: number; to: number } | { k: 'index'; v: unknown };
  const indexEdit: fc.Arbitrary<IndexEdit> = fc.oneof(
    fc.record({ k: fc.constant('remap' as const), t: idx, to: fc.oneof(fc.constantFrom(...shardNames, '../x.safetensors', '', '.', 'model.safetensors', 'sub/a.safetensors'), weirdValue) }),
    fc.record({ k: fc.constant('unlist' as const), t: idx }),
    fc.record({ k: fc.constant('list' as const), name: fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom(...tensorNames, '__proto__')), to: fc.nat(2) }),
    fc.record({ k: fc.constant('dropFile' as const), f: fc.nat(2) }),
    fc.record({ k: fc.constant('swapFiles' as const), a: fc.nat(2), b: fc.nat(2) }),
    fc.record({ k: fc.constant('dupFile' as const), from: fc.nat(2), to: fc.nat(2) }),
    fc.record({ k: fc.constant('index' as const), v: weirdValue }),
  );

  it('mutated weight maps and shard sets: success (with exactly the right weights) or a known MlaError', async () => {
    baseline = await placedBytes({ ...shards, 'config.json': tinyConfigBytes });
    const seen = new Map<string, number>();
    await fc.assert(fc.asyncProperty(fc.array(indexEdit, { minLength: 1, maxLength: 3 }), async (edits) => {
      const files: Record<string, Uint8Array> = { ...shards, 'config.json': tinyConfigBytes };
      let index: any = structuredClone(baseIndex);
      for (const m of edits.map((e) => structuredClone(e))) {
        const wm = index && typeof index === 'object' && index.weight_map && typeof index.weight_map === 'object' ? index.weight_map : null;
        if (m.k === 'remap' && wm) wm[tensorNames[m.t % tensorNames.length]] = m.to;
        if (m.k === 'unlist' && wm) delete wm[tensorNames[m.t % tensorNames.length]];
        if (m.k === 'list' && wm) Object.defineProperty(wm, m.name, { value: shardNames[m.to], enumerable: true, configurable: true, writable: true });
        if (m.k === 'dropFile') delete files[shardNames[m.f]];
        if (m.k === 'swapFiles') [files[shardNames[m.a]], files[shardNames[m.b]]] = [files[shardNames[m.b]], files[shardNames[m.a]]];
        if (m.k === 'dupFile') files[shardNames[m.to]] = files[shardNames[m.from]];
        if (m.k === 'index') index = m.v;
      }
      files['model.safetensors.index.json'] = enc(index === undefined ? null : index);
      for (const k of Object.keys(files)) if (files[k] === undefined) delete files[k];
      let bytes: Uint8Array | undefined;
      const got = await outcomeAsync(async () => { bytes = await placedBytes(files); });
      seen.set(got, (seen.get(got) ?? 0) + 1);
      // Whatever loads holds exactly the checkpoint's weights: an index can never redirect a tensor.
      if (bytes) expect(Buffer.from(bytes).equals(Buffer.from(baseline))).toBe(true);
    }), params(2000));
    expect(seen.get('BAD_CHECKPOINT') ?? 0).toBeGreaterThan(1000);
    expect(seen.get('ok') ?? 0).toBeGreaterThan(20);
  });
});

/** Placed weight bytes of a file-map source (copy), via the loader path without kernels. */
async function placedBytes(files: ModelSource): Promise<Uint8Array> {
  const src = await openSource(files);
  const config = parseConfig(src.config);
  checkMemory(config, KERNELS);
  heap.reset();
  try {
    const w = placeWeights(config, src.tensors, heap);
    return heap.u8(w.embed, w.bytes).slice();
  } finally {
    heap.reset();
  }
}

// ---------------------------------------------------------------------------------------------

describe('fuzzing loadModel itself', () => {
  it('mutated headers and configs through loadModel with a file map: a Model or a known MlaError', async () => {
    const seen = new Map<string, number>();
    const input = fc.oneof(
      fc.tuple(fc.array(headerEdit, { maxLength: 3 }), lengthField).map(([edits, len]) => ({ 'config.json': tinyConfigBytes, 'model.safetensors': rebuild(tinyFile, edits, len, { k: 'keep' }) })),
      fc.array(configEdit, { minLength: 1, maxLength: 3 }).map((edits) => ({ 'config.json': enc(applyConfigEdits(tinyConfig, edits)), 'model.safetensors': tinyFile })),
    );
    await fc.assert(fc.asyncProperty(input, async (files) => {
      const got = await outcomeAsync(async () => {
        const m = await loadModel(files, { simd: 'simd' });
        // weights 'auto': matrices stored all in F16 (or BF16) stay so, the rest are f32.
        const plan = weightPlan('auto', safetensorsSource(files['model.safetensors'], 'model.safetensors'));
        expect(m.weightBytes).toBe(weightBytes(m.config, plan));
        expect(m.weightBytes).toBeLessThanOrEqual(memoryNeed(m.config, KERNELS, { plan }).weights);
        m.dispose();
      });
      seen.set(got, (seen.get(got) ?? 0) + 1);
    }), params(500));
    expect(seen.get('ok') ?? 0).toBeGreaterThan(30);
    expect(seen.size).toBeGreaterThan(2);
  });
});
