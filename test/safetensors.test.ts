import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MlaError } from '../src/errors.js';
import { elementCount, parseSafetensorsHeader, readTensorF32, readTensorF32At, safetensorsHeaderLength, type TensorInfo } from '../src/formats/safetensors.js';
import { toBF16Bits, toF16Bits, writeSafetensors } from './reference/safetensors-writer.js';

const MODEL_DIR = '/work/shared/models/fortune-mla';

/** A file from a raw header (string or object) followed by `dataBytes` zero bytes (or given bytes). */
function rawFile(header: string | object | Uint8Array, data: number | Uint8Array = 0, declaredLen?: number): Uint8Array {
  const h = header instanceof Uint8Array ? header
    : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setUint32(0, declaredLen ?? h.length, true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

/** Runs f and returns the MlaError code it throws; fails on success or any other exception. */
function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof MlaError) return e.code;
    throw new Error(`threw a non-MlaError: ${String(e)}`);
  }
  throw new Error('did not throw');
}

function readAll(bytes: Uint8Array, info: TensorInfo): Float32Array {
  const out = new Float32Array(elementCount(info.shape));
  readTensorF32(bytes, info, out);
  return out;
}

describe('safetensors round trip', () => {
  const tensors = {
    'a.weight': { shape: [3, 5], data: Float32Array.from({ length: 15 }, (_, i) => i * 0.25 - 1.5) },
    scalar: { shape: [], data: new Float32Array([Math.PI]) },
    empty: { shape: [0, 4], data: new Float32Array(0) },
    'b.bias': { shape: [7], data: new Float32Array([1e-30, -0, Infinity, -Infinity, 3.4e38, 1, 2]) },
  };

  it('reads back every tensor exactly, with absolute offsets and an 8-aligned data section', () => {
    const file = writeSafetensors(tensors, { format: 'pt', note: 'héllo' });
    const h = parseSafetensorsHeader(file);
    expect(h.dataStart % 8).toBe(0);
    expect(h.fileBytes).toBe(file.length);
    expect(h.metadata).toEqual({ format: 'pt', note: 'héllo' });
    expect([...h.tensors.keys()].sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(tensors)) {
      const info = h.tensors.get(name)!;
      expect(info.name).toBe(name);
      expect(info.dtype).toBe('F32');
      expect(info.shape).toEqual(t.shape);
      expect(info.begin).toBeGreaterThanOrEqual(h.dataStart);
      expect(info.end - info.begin).toBe(4 * t.data.length);
      expect(Array.from(readAll(file, info))).toEqual(Array.from(t.data));
    }
    expect(h.tensors.get('a.weight')!.begin).toBe(h.dataStart);
  });

  it('reads unaligned data (odd header length, and a view at an odd byteOffset)', () => {
    const t = { shape: [2, 3], data: Float32Array.from([1.5, -2, 3.25, 4, 5e-3, -6e7]) };
    const data = new Uint8Array(24);
    for (let i = 0; i < 6; i++) new DataView(data.buffer).setFloat32(4 * i, t.data[i], true);
    let json = JSON.stringify({ x: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] } });
    while (json.length % 4 !== 1) json += ' ';
    const file = rawFile(json, data);
    const h = parseSafetensorsHeader(file);
    expect(h.dataStart % 4).not.toBe(0);
    expect(Array.from(readAll(file, h.tensors.get('x')!))).toEqual(Array.from(t.data));

    const aligned = writeSafetensors({ x: t });
    const big = new Uint8Array(aligned.length + 1);
    big.set(aligned, 1);
    const shifted = big.subarray(1);
    const h2 = parseSafetensorsHeader(shifted);
    expect(Array.from(readAll(shifted, h2.tensors.get('x')!))).toEqual(Array.from(t.data));
  });

  it('parses a file holding a tensor of unknown or unread dtype; only reading it fails, with UNSUPPORTED_DTYPE', () => {
    const file = rawFile({
      w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      q: { dtype: 'Q4_WEIRD', shape: [3], data_offsets: [8, 10] },
      i: { dtype: 'I64', shape: [3], data_offsets: [10, 34] },
      h: { dtype: 'BF16', shape: [3], data_offsets: [34, 40] },
    }, 40);
    const hdr = parseSafetensorsHeader(file, 'x.safetensors');
    expect(hdr.tensors.get('q')!.dtype).toBe('Q4_WEIRD');
    expect(Array.from(readAll(file, hdr.tensors.get('w')!))).toEqual([0, 0]);
    expect(Array.from(readAll(file, hdr.tensors.get('h')!))).toEqual([0, 0, 0]);
    for (const [name, dtype] of [['q', 'Q4_WEIRD'], ['i', 'I64']]) {
      const info = hdr.tensors.get(name)!;
      let err: unknown;
      try { readTensorF32(file, info, new Float32Array(3), 'x.safetensors'); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(MlaError);
      expect((err as MlaError).code).toBe('UNSUPPORTED_DTYPE');
      expect((err as MlaError).message).toContain(name);
      expect((err as MlaError).message).toContain(dtype);
    }
  });

  it('checks the byte length of known non-F32 dtypes too', () => {
    const ok = rawFile({ h: { dtype: 'F16', shape: [3], data_offsets: [0, 6] } }, 6);
    expect(parseSafetensorsHeader(ok).tensors.get('h')!.end).toBe(ok.length);
    const badLen = rawFile({ h: { dtype: 'BF16', shape: [3], data_offsets: [0, 12] } }, 12);
    expect(codeOf(() => parseSafetensorsHeader(badLen))).toBe('BAD_CHECKPOINT');
  });

  it('rejects an output buffer of the wrong length', () => {
    const file = writeSafetensors({ x: { shape: [4], data: new Float32Array(4) } });
    const info = parseSafetensorsHeader(file).tensors.get('x')!;
    expect(codeOf(() => readTensorF32(file, info, new Float32Array(3)))).toBe('BAD_INPUT');
  });
});

describe('safetensors validation', () => {
  const f32 = (shape: unknown, offsets: unknown) => ({ dtype: 'F32', shape, data_offsets: offsets });
  const cases: [string, () => Uint8Array][] = [
    ['an empty file', () => new Uint8Array(0)],
    ['a 7-byte file', () => new Uint8Array(7)],
    ['a header length past the end', () => rawFile('{}', 0, 3)],
    ['an absurd header length (> 100 MB)', () => rawFile('{}', 0, 200_000_000)],
    ['a header length with the high 32 bits set', () => {
      const f = rawFile('{}'); new DataView(f.buffer).setUint32(4, 1, true); return f;
    }],
    ['a header that is not JSON', () => rawFile('{"a": ')],
    ['a header that is not UTF-8', () => rawFile(new Uint8Array([0x7b, 0xff, 0x7d]))],
    ['a header that is a JSON array', () => rawFile('[]')],
    ['a header that is JSON null', () => rawFile('null')],
    ['a header that is a number', () => rawFile('42')],
    ['an entry that is not an object', () => rawFile({ x: 3 })],
    ['an entry that is null', () => rawFile({ x: null })],
    ['an entry without dtype', () => rawFile({ x: { shape: [1], data_offsets: [0, 4] } }, 4)],
    ['a dtype that is not a string', () => rawFile({ x: { dtype: 7, shape: [1], data_offsets: [0, 4] } }, 4)],
    ['an entry without shape', () => rawFile({ x: { dtype: 'F32', data_offsets: [0, 4] } }, 4)],
    ['a shape that is not an array', () => rawFile({ x: f32(4, [0, 4]) }, 4)],
    ['a negative dimension', () => rawFile({ x: f32([-1], [0, 4]) }, 4)],
    ['a fractional dimension', () => rawFile({ x: f32([1.5], [0, 4]) }, 4)],
    ['a string dimension', () => rawFile({ x: f32(['1'], [0, 4]) }, 4)],
    ['an entry without data_offsets', () => rawFile({ x: { dtype: 'F32', shape: [1] } }, 4)],
    ['data_offsets of three numbers', () => rawFile({ x: f32([1], [0, 4, 8]) }, 8)],
    ['data_offsets of one number', () => rawFile({ x: f32([1], [4]) }, 8)],
    ['a negative data offset', () => rawFile({ x: f32([1], [-4, 0]) }, 4)],
    ['a fractional data offset', () => rawFile({ x: f32([1], [0.5, 4.5]) }, 8)],
    ['string data offsets', () => rawFile({ x: f32([1], ['0', '4']) }, 4)],
    ['begin after end', () => rawFile({ x: f32([0], [4, 0]) }, 4)],
    ['a byte length that does not match the shape', () => rawFile({ x: f32([2, 2], [0, 12]) }, 16)],
    ['data past the end of the file', () => rawFile({ x: f32([4], [0, 16]) }, 12)],
    ['overlapping tensors', () => rawFile({ x: f32([2], [0, 8]), y: f32([2], [4, 12]) }, 12)],
    ['one tensor inside another', () => rawFile({ x: f32([4], [0, 16]), y: f32([1], [4, 8]) }, 16)],
    ['two tensors at the same offsets', () => rawFile({ x: f32([1], [0, 4]), y: f32([1], [0, 4]) }, 4)],
    ['__metadata__ that is not an object', () => rawFile({ __metadata__: 'x' })],
    ['__metadata__ with a non-string value', () => rawFile({ __metadata__: { n: 3 } })],
  ];
  it.each(cases)('rejects %s with BAD_CHECKPOINT naming the file', (_what, make) => {
    const file = make();
    let err: unknown;
    try { parseSafetensorsHeader(file, 'shard-3.safetensors'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(MlaError);
    expect((err as MlaError).code).toBe('BAD_CHECKPOINT');
    expect((err as MlaError).message).toContain('shard-3.safetensors');
  });

  it('names the offending tensor', () => {
    const file = rawFile({ good: f32([1], [0, 4]), 'layers.7.bad': f32([3], [4, 8]) }, 8);
    expect(() => parseSafetensorsHeader(file)).toThrow(/layers\.7\.bad/);
  });

  it('accepts zero-length tensors anywhere and an empty header', () => {
    const file = rawFile({ x: f32([2], [0, 8]), z: f32([0], [4, 4]), e: f32([5, 0], [8, 8]) }, 8);
    expect(parseSafetensorsHeader(file).tensors.size).toBe(3);
    expect(parseSafetensorsHeader(rawFile('{}')).tensors.size).toBe(0);
    expect(parseSafetensorsHeader(rawFile('{}        ')).tensors.size).toBe(0);
  });
});

describe('the real fortune-mla checkpoint', () => {
  const file = new Uint8Array(readFileSync(`${MODEL_DIR}/model.safetensors`));
  const config = JSON.parse(readFileSync(`${MODEL_DIR}/config.json`, 'utf8'));

  it('has every tensor its config implies, with the right shapes', () => {
    const h = parseSafetensorsHeader(file);
    const c = config;
    const d = c.hidden_size, H = c.num_attention_heads;
    const qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
    const want = new Map<string, number[]>([
      ['model.embed_tokens.weight', [c.vocab_size, d]],
      ['model.norm.weight', [d]],
      ['lm_head.weight', [c.vocab_size, d]],
    ]);
    for (let l = 0; l < c.num_hidden_layers; l++) {
      const p = `model.layers.${l}.`;
      want.set(p + 'input_layernorm.weight', [d]);
      want.set(p + 'post_attention_layernorm.weight', [d]);
      want.set(p + 'self_attn.q_a_proj.weight', [c.q_lora_rank, d]);
      want.set(p + 'self_attn.q_a_layernorm.weight', [c.q_lora_rank]);
      want.set(p + 'self_attn.q_b_proj.weight', [H * qk, c.q_lora_rank]);
      want.set(p + 'self_attn.kv_a_proj_with_mqa.weight', [c.kv_lora_rank + c.qk_rope_head_dim, d]);
      want.set(p + 'self_attn.kv_a_layernorm.weight', [c.kv_lora_rank]);
      want.set(p + 'self_attn.kv_b_proj.weight', [H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank]);
      want.set(p + 'self_attn.o_proj.weight', [d, H * c.v_head_dim]);
      want.set(p + 'mlp.gate_proj.weight', [c.intermediate_size, d]);
      want.set(p + 'mlp.up_proj.weight', [c.intermediate_size, d]);
      want.set(p + 'mlp.down_proj.weight', [d, c.intermediate_size]);
    }
    expect([...h.tensors.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, shape] of want) expect(h.tensors.get(name)!.shape, name).toEqual(shape);
    expect(h.tensors.get('model.layers.0.self_attn.kv_a_proj_with_mqa.weight')!.shape).toEqual([48 + 16, 192]);

    let params = 0;
    for (const info of h.tensors.values()) {
      expect(info.dtype).toBe('F32');
      const v = readAll(file, info);
      params += v.length;
      expect(v.every(Number.isFinite), info.name).toBe(true);
    }
    expect(params).toBe(1_590_528); // the README's parameter count
  });

  it('rejects the file truncated anywhere with BAD_CHECKPOINT, and nothing else', () => {
    const h = parseSafetensorsHeader(file);
    const cuts = new Set([0, 1, 4, 7, 8, 9, 20, h.dataStart >> 1, h.dataStart - 2, h.dataStart - 1, h.dataStart,
      h.dataStart + 1, h.dataStart + 1000, file.length >> 1, file.length - 4, file.length - 1]);
    for (let i = 0; i < 40; i++) cuts.add(Math.floor(((i + 0.37) / 40) * file.length));
    for (const cut of cuts) {
      expect(codeOf(() => parseSafetensorsHeader(file.subarray(0, cut), 'model.safetensors')), `cut at ${cut}`).toBe('BAD_CHECKPOINT');
    }
  });

  it('never throws anything but BAD_CHECKPOINT on a corrupted header', () => {
    const h = parseSafetensorsHeader(file);
    let seed = 12345;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    let rejected = 0;
    for (let trial = 0; trial < 300; trial++) {
      const copy = file.slice();
      const flips = 1 + Math.floor(rand() * 3);
      for (let k = 0; k < flips; k++) {
        const at = Math.floor(rand() * h.dataStart);
        copy[at] = trial % 2 ? Math.floor(rand() * 256) : '0123456789,:[]{}"'.charCodeAt(Math.floor(rand() * 17));
      }
      try {
        parseSafetensorsHeader(copy);
      } catch (e) {
        expect(e).toBeInstanceOf(MlaError);
        expect((e as MlaError).code).toBe('BAD_CHECKPOINT');
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(100);
  });
});

/** A file of one 1-D tensor of 16-bit patterns `bits` in `dtype`, `lead` bytes into the data section. */
function halfFile(dtype: 'F16' | 'BF16', bits: number[], lead = 0): Uint8Array {
  const data = new Uint8Array(lead + 2 * bits.length);
  const v = new DataView(data.buffer);
  bits.forEach((b, i) => v.setUint16(lead + 2 * i, b, true));
  return rawFile({ x: { dtype, shape: [bits.length], data_offsets: [lead, lead + 2 * bits.length] } }, data);
}

function readHalf(dtype: 'F16' | 'BF16', bits: number[], lead = 0): Float32Array {
  const file = halfFile(dtype, bits, lead);
  return readAll(file, parseSafetensorsHeader(file).tensors.get('x')!);
}

/** Same numbers, with -0 told apart from 0 and NaN equal to NaN. */
function expectSameFloats(actual: ArrayLike<number>, expected: number[]): void {
  expect(Array.from(actual).map((x) => (Object.is(x, -0) ? '-0' : x))).toEqual(expected.map((x) => (Object.is(x, -0) ? '-0' : x)));
}

describe('F16 and BF16 are widened to f32 exactly', () => {
  it('F16: hand-computed values, subnormals, ±0, ±Inf and NaN', () => {
    const cases: [number, number][] = [
      [0x3c00, 1], [0xc000, -2], [0x3800, 0.5], [0x3555, 0.333251953125], [0x4248, 3.140625],
      [0x7bff, 65504],                          // largest finite
      [0x0400, 2 ** -14],                       // least normal, 6.103515625e-5
      [0x03ff, 1023 * 2 ** -24],                // largest subnormal, 6.097555160522461e-5
      [0x0001, 2 ** -24],                       // least subnormal, 5.960464477539063e-8
      [0x8001, -(2 ** -24)], [0x0200, 2 ** -15], [0x0155, 341 * 2 ** -24],
      [0x0000, 0], [0x8000, -0],
      [0x7c00, Infinity], [0xfc00, -Infinity], [0x7e00, NaN], [0x7c01, NaN], [0xfe00, NaN],
      [0x5640, 100], [0xd640, -100], [0x1400, 2 ** -10],
    ];
    for (const lead of [0, 1, 2, 6]) { // aligned and unaligned data
      expectSameFloats(readHalf('F16', cases.map((c) => c[0]), lead), cases.map((c) => c[1]));
    }
  });

  it('BF16: hand-computed values, subnormals, ±0, ±Inf and NaN', () => {
    const cases: [number, number][] = [
      [0x3f80, 1], [0xc000, -2], [0x3eab, 0.333984375], [0x4049, 3.140625], [0x42c8, 100],
      [0x7f7f, 3.3895313892515355e38],          // largest finite: (2 − 2^-7) · 2^127
      [0x0080, 2 ** -126],                      // least normal
      [0x007f, 127 * 2 ** -133],                // largest subnormal
      [0x0001, 2 ** -133],                      // least subnormal, 9.183549615799121e-41
      [0x8001, -(2 ** -133)],
      [0x0000, 0], [0x8000, -0],
      [0x7f80, Infinity], [0xff80, -Infinity], [0x7fc0, NaN], [0x7f81, NaN], [0xffc0, NaN],
    ];
    for (const lead of [0, 1, 2, 6]) {
      expectSameFloats(readHalf('BF16', cases.map((c) => c[0]), lead), cases.map((c) => c[1]));
    }
  });

  it('all 65536 F16 patterns match the definition computed in float64', () => {
    const all = Array.from({ length: 65536 }, (_, i) => i);
    const got = readHalf('F16', all);
    const want = all.map((h) => {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
      if (e === 0x1f) return m ? NaN : s * Infinity;
      return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
    });
    expectSameFloats(got, want);
    // And the bits: NaN payloads too (the quiet bit and the low mantissa bits shift up by 13).
    const bits = new Uint32Array(got.buffer);
    expect(bits[0x7c01]).toBe(0x7f802000);
    expect(bits[0xfe01]).toBe(0xffc02000);
  });

  it('all 65536 BF16 patterns are the upper halves of their f32', () => {
    const all = Array.from({ length: 65536 }, (_, i) => i);
    const got = new Uint32Array(readHalf('BF16', all).buffer);
    for (let h = 0; h < 65536; h++) if (got[h] !== ((h << 16) >>> 0)) expect.fail(`BF16 ${h.toString(16)} read as ${got[h].toString(16)}`);
  });

  it('the test writer rounds to nearest even, and reading inverts writing', () => {
    expect(toF16Bits(65519)).toBe(0x7bff);
    expect(toF16Bits(65520)).toBe(0x7c00);
    expect(toF16Bits(-1e6)).toBe(0xfc00);
    expect(toF16Bits(2 ** -25)).toBe(0);          // halfway between 0 and 2^-24: to even (0)
    expect(toF16Bits(3 * 2 ** -26)).toBe(1);
    expect(toF16Bits(3 * 2 ** -25)).toBe(2);      // halfway between 1 and 2 subnormal steps: to even
    expect(toF16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway: to even
    expect(toF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(toF16Bits(1 / 3)).toBe(0x3555);
    expect(toF16Bits(-0)).toBe(0x8000);
    expect(toBF16Bits(1 / 3)).toBe(0x3eab);
    expect(toBF16Bits(Math.PI)).toBe(0x4049);
    expect(toBF16Bits(1 + 2 ** -8)).toBe(0x3f80); // halfway: to even
    expect(toBF16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(toBF16Bits(3.4e38)).toBe(0x7f80);      // rounds past the largest finite
    expect(toBF16Bits(NaN)).toBe(0x7fc0);
    const all = Array.from({ length: 65536 }, (_, i) => i);
    const f16 = readHalf('F16', all), bf16 = readHalf('BF16', all);
    for (let h = 0; h < 65536; h++) {
      if (!Number.isNaN(f16[h]) && toF16Bits(f16[h]) !== h) expect.fail(`F16 ${h.toString(16)} does not survive a round trip`);
      if (!Number.isNaN(bf16[h]) && toBF16Bits(bf16[h]) !== h) expect.fail(`BF16 ${h.toString(16)} does not survive a round trip`);
    }
  });

  it('a written F16/BF16 file reads back as the rounded values', () => {
    const data = Float32Array.from([0, 1, -1 / 3, Math.PI, 1e-6, -65504, 1234.5678, 2 ** -20]);
    for (const dtype of ['F16', 'BF16'] as const) {
      const file = writeSafetensors({ x: { shape: [2, 4], data } }, undefined, { dtype });
      const info = parseSafetensorsHeader(file).tensors.get('x')!;
      expect(info.dtype).toBe(dtype);
      expect(info.end - info.begin).toBe(16);
      const round = (x: number) => {
        const bits = dtype === 'F16' ? toF16Bits(x) : toBF16Bits(x);
        return readHalf(dtype, [bits])[0];
      };
      expect(Array.from(readAll(file, info))).toEqual(Array.from(data, round));
    }
    expect(toBF16Bits(1234.5678)).toBe(0x449a); // 1232
    expect(readHalf('BF16', [0x449a])[0]).toBe(1232);
    expect(readHalf('F16', [toF16Bits(1234.5678)])[0]).toBe(1235); // steps of 1 in [1024, 2048)
  });

  it('a zero-element F16 tensor reads as nothing', () => {
    const file = rawFile({ x: { dtype: 'F16', shape: [0, 3], data_offsets: [0, 0] } });
    expect(readAll(file, parseSafetensorsHeader(file).tensors.get('x')!).length).toBe(0);
  });
});

describe('streaming: a header parsed from the first bytes and the file size', () => {
  const t = { a: { shape: [3], data: Float32Array.from([1, 2, 3]) }, b: { shape: [2, 2], data: Float32Array.from([4, 5, 6, 7]) } };
  const file = writeSafetensors(t);
  const whole = parseSafetensorsHeader(file);

  it('gives the same header as the whole file', () => {
    const first8 = file.subarray(0, 8);
    const len = safetensorsHeaderLength(first8, 'm', file.length);
    expect(len + 8).toBe(whole.dataStart);
    const prefix = parseSafetensorsHeader(file.slice(0, 8 + len), 'm', file.length);
    expect(prefix).toEqual(whole);
  });

  it('reads tensors by range through a callback, and never past the ranges it asks for', () => {
    const reads: [number, number][] = [];
    const readAt = (p: number, into: Uint8Array) => { reads.push([p, p + into.length]); into.set(file.subarray(p, p + into.length)); };
    const out = new Float32Array(4);
    readTensorF32At(readAt, whole.tensors.get('b')!, out);
    expect(Array.from(out)).toEqual([4, 5, 6, 7]);
    expect(reads).toEqual([[whole.tensors.get('b')!.begin, whole.tensors.get('b')!.end]]);
  });

  it('checks offsets against the file size, not the prefix it was given', () => {
    const len = safetensorsHeaderLength(file, 'm', file.length);
    expect(codeOf(() => parseSafetensorsHeader(file.slice(0, 8 + len), 'm', file.length - 1))).toBe('BAD_CHECKPOINT');
    expect(codeOf(() => safetensorsHeaderLength(file, 'm', 8 + len - 1))).toBe('BAD_CHECKPOINT');
    expect(codeOf(() => safetensorsHeaderLength(file, 'm', 7))).toBe('BAD_CHECKPOINT');
    // A prefix shorter than the header it announces is a caller's mistake, not a bad file.
    expect(codeOf(() => parseSafetensorsHeader(file.slice(0, 8 + len - 1), 'm', file.length))).toBe('BAD_INPUT');
  });
});
