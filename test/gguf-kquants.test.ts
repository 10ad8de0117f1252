// A GGUF whose matrices are Q4_K and Q6_K (as a Q4_K_M file mixes them), loaded with weights
// 'auto': the K-quant matrices stay in their super-blocks (q4k / q6k, read by assembly/kquants.ts)
// and give the logits of the same file widened exactly to f32 (weights 'f32'), but for the
// activations' int8 rounding per 256; the same greedy tokens; the same bits on 1 and 2 threads.
// The file is written by our writer in F32, then the chosen tensors are quantised in place by a
// test-only Q4_K / Q6_K quantiser (plain rules, not llama.cpp's search: any valid blocks do, since
// both loads read the same ones).
import { describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../src/index.js';
import { parseGguf } from '../src/formats/gguf.js';
import { writeGguf } from '../src/formats/gguf-write.js';
import { decodeRow, f32ToF16Bits, f16BitsToF32 } from '../src/formats/quant-blocks.js';
import { parseConfig } from '../src/formats/config.js';
import { openSource } from '../src/formats/source.js';
import type { Ops } from '../src/model/ops.js';
import type { Weights } from '../src/model/weights.js';
import { BUILDS, relativeError } from './helpers.js';
import { makeRandomCheckpoint, tinyMlaConfig } from './reference/model.js';

const Q4_K = 12, Q6_K = 14;

/** One row of n values (a multiple of 256) as Q4_K: per 32, scale (max − min)/15 and min ≤ 0; both to 6 bits per 256. */
function quantizeQ4K(x: Float32Array, out: Uint8Array, at: number): void {
  const v = new DataView(out.buffer, out.byteOffset);
  for (let sb = 0; sb < x.length / 256; sb++, at += 144) {
    const s = x.subarray(sb * 256, sb * 256 + 256), scale: number[] = [], min: number[] = [];
    for (let j = 0; j < 8; j++) {
      const sub = s.subarray(32 * j, 32 * j + 32);
      const lo = Math.min(0, ...sub), hi = Math.max(...sub);
      scale.push((hi - lo) / 15); min.push(-lo);
    }
    const d = f16BitsToF32(f32ToF16Bits(Math.max(...scale) / 63)), dmin = f16BitsToF32(f32ToF16Bits(Math.max(...min) / 63));
    v.setUint16(at, f32ToF16Bits(d), true); v.setUint16(at + 2, f32ToF16Bits(dmin), true);
    const sc = scale.map((t) => (d ? Math.min(63, Math.round(t / d)) : 0)), mn = min.map((t) => (dmin ? Math.min(63, Math.round(t / dmin)) : 0));
    const k = out.subarray(at + 4, at + 16);
    k.fill(0);
    for (let j = 0; j < 4; j++) {
      k[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
      k[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
      k[j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4);
    }
    for (let j = 0; j < 8; j++) {
      for (let l = 0; l < 32; l++) {
        const step = d * sc[j], q = step ? Math.max(0, Math.min(15, Math.round((s[32 * j + l] + dmin * mn[j]) / step))) : 0;
        const byte = at + 16 + 32 * (j >> 1) + l;
        out[byte] = j & 1 ? (out[byte] & 15) | (q << 4) : (out[byte] & 0xf0) | q;
      }
    }
  }
}

/** One row as Q6_K: per 16, scale max|x|/31 to int8 over d = max scale/127; codes q + 32 in 0..63. */
function quantizeQ6K(x: Float32Array, out: Uint8Array, at: number): void {
  const v = new DataView(out.buffer, out.byteOffset);
  for (let sb = 0; sb < x.length / 256; sb++, at += 210) {
    const s = x.subarray(sb * 256, sb * 256 + 256), scale: number[] = [];
    for (let b = 0; b < 16; b++) scale.push(Math.max(...s.subarray(16 * b, 16 * b + 16).map(Math.abs)) / 31);
    const d = f16BitsToF32(f32ToF16Bits(Math.max(...scale) / 127));
    v.setUint16(at + 208, f32ToF16Bits(d), true);
    const sc = scale.map((t) => (d ? Math.min(127, Math.round(t / d)) : 0));
    for (let b = 0; b < 16; b++) v.setInt8(at + 192 + b, sc[b]);
    out.fill(0, at, at + 192);
    for (let i = 0; i < 256; i++) {
      const step = d * sc[i >> 4], q = (step ? Math.max(-32, Math.min(31, Math.round(s[i] / step))) : 0) + 32;
      const h = i >> 7, g = (i >> 5) & 3, l = i & 31;
      const ql = at + 64 * h + 32 * (g & 1) + l, qh = at + 128 + 32 * h + l;
      out[ql] |= g < 2 ? q & 15 : (q & 15) << 4;
      out[qh] |= (q >> 4) << (2 * g);
    }
  }
}

/** `bytes` (an F32 GGUF) with the named tensors rewritten in place as Q4_K / Q6_K: type in the header, blocks at their offset. */
function requantize(bytes: Uint8Array, types: Record<string, number>): Uint8Array {
  const out = bytes.slice();
  const file = { name: 'x.gguf', size: out.length, read: (at: number, dst: Uint8Array) => dst.set(out.subarray(at, at + dst.length)) };
  const gguf = parseGguf(file);
  const view = new DataView(out.buffer);
  for (const [name, type] of Object.entries(types)) {
    const t = gguf.tensors.get(name)!;
    expect(t, name).toBeDefined();
    // The tensor info: u64 name length, the name, u32 dims, dims × u64, then the u32 type.
    const key = new TextEncoder().encode(name);
    let at = -1;
    for (let i = 0; i < out.length && at < 0; i++) {
      if (view.getUint32(i, true) === key.length && view.getUint32(i + 4, true) === 0 && out.subarray(i + 8, i + 8 + key.length).every((b, j) => b === key[j])) at = i;
    }
    const typeAt = at + 8 + key.length + 4 + 8 * t.ne.length;
    expect(view.getUint32(typeAt, true), name).toBe(0);
    view.setUint32(typeAt, type, true);
    const cols = t.ne[0], rows = t.bytes / 4 / cols, rb = (cols / 256) * (type === Q4_K ? 144 : 210);
    const values = new Float32Array(out.buffer.slice(t.begin, t.begin + t.bytes));
    const blocks = new Uint8Array(rows * rb);
    for (let r = 0; r < rows; r++) (type === Q4_K ? quantizeQ4K : quantizeQ6K)(values.subarray(r * cols, (r + 1) * cols), blocks, r * rb);
    out.fill(0, t.begin, t.begin + t.bytes);
    out.set(blocks, t.begin);
    // The blocks hold the values within a step of their grid (a check of the quantiser itself).
    const back = new Float32Array(cols);
    let err = 0, top = 0;
    for (let r = 0; r < rows; r++) {
      decodeRow(type === Q4_K ? 'Q4_K' : 'Q6_K', blocks, r * rb, cols, back, 0);
      for (let i = 0; i < cols; i++) { err = Math.max(err, Math.abs(back[i] - values[r * cols + i])); top = Math.max(top, Math.abs(values[r * cols + i])); }
    }
    expect(err / top, `${name} round trip`).toBeLessThan(type === Q4_K ? 0.15 : 0.05);
  }
  return out;
}

const config = tinyMlaConfig({ hidden_size: 256, intermediate_size: 512, q_lora_rank: 256, vocab_size: 64 });
/** Q4_K and Q6_K as a Q4_K_M file mixes them; layer 1's [q_a | kv_a] mixes the two (kept f32); o_proj (48 columns) and kv_b stay F32. */
const TYPES: Record<string, number> = {
  'token_embd.weight': Q4_K, 'output.weight': Q6_K,
  'blk.0.attn_q_a.weight': Q4_K, 'blk.0.attn_kv_a_mqa.weight': Q4_K, 'blk.0.attn_q_b.weight': Q6_K,
  'blk.0.ffn_gate.weight': Q4_K, 'blk.0.ffn_up.weight': Q4_K, 'blk.0.ffn_down.weight': Q6_K,
  'blk.1.attn_q_a.weight': Q4_K, 'blk.1.attn_kv_a_mqa.weight': Q6_K, 'blk.1.attn_q_b.weight': Q4_K,
  'blk.1.ffn_gate.weight': Q6_K, 'blk.1.ffn_up.weight': Q6_K, 'blk.1.ffn_down.weight': Q4_K,
};
const file = async () => {
  const src = await openSource({ config, tensors: makeRandomCheckpoint(config, 7) });
  return requantize(writeGguf(parseConfig(src.config), src.tensors, null, { type: 'F32' }), TYPES);
};

const randomIds = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % 64);
const inside = (m: Model) => m as unknown as { decoder: { ops: Ops; w: Weights } };

/** Prefill logits, then greedy decode steps: every step's logits and the tokens chosen. */
function run(m: Model, ids: number[], steps: number): { logits: Float32Array[]; tokens: number[] } {
  const s = m.createSession({ contextLength: ids.length + steps });
  const logits = [s.prefill(ids).slice()], tokens: number[] = [];
  for (let i = 0; i < steps; i++) {
    const last = logits[logits.length - 1];
    const next = last.indexOf(Math.max(...last));
    tokens.push(next);
    logits.push(s.step(next).slice());
  }
  s.dispose();
  return { logits, tokens };
}

/**
 * Largest |K-quant − f32| over the logits as a fraction of the largest |f32 logit|: the weights
 * are the same values; the products round the activations to int8 per 256 (Q8_K). The int8 / int4
 * formats (per 32) are held to 0.03 in weights-formats.test.ts; a scale per 256 is set by the
 * largest of 256 values rather than of 32 (about 1.4× the step for bell-shaped activations), so
 * 0.03 × 1.4 rounded up. (Measured: 0.030 at the worst of 9 outputs, both builds.)
 */
const BOUND = 0.05;

describe.each(BUILDS)('GGUF Q4_K / Q6_K kept as stored (%s build)', (simd) => {
  it('weights auto: q4k / q6k matrices, fewer bytes, logits near the f32 load, the same greedy tokens', async () => {
    const source = { 'm.gguf': await file() };
    const f32 = await loadModel(source, { simd, weights: 'f32', threads: 1 });
    const auto = await loadModel(source, { simd, weights: 'auto', threads: 1 });
    const w = inside(auto).decoder.w, l0 = w.layers[0], l1 = w.layers[1];
    expect([w.embed.format, w.lmHead.format]).toEqual(['q4k', 'q6k']);
    expect([l0.wIn.format, l0.wqB!.format, l0.wGateUp!.format, l0.wDown!.format]).toEqual(['q4k', 'q6k', 'q4k', 'q6k']);
    expect([l1.wIn.format, l1.wqB!.format, l1.wGateUp!.format, l1.wDown!.format, l1.wo.format]).toEqual(['f32', 'q4k', 'q6k', 'q4k', 'f32']);
    expect(auto.weightBytes).toBeLessThan(f32.weightBytes / 3);
    const ids = randomIds(24, 5);
    const want = run(f32, ids, 8), got = run(auto, ids, 8);
    got.logits.forEach((y, i) => expect(relativeError(y, want.logits[i]), `logits ${i}`).toBeLessThan(BOUND));
    expect(got.tokens).toEqual(want.tokens);
    // Not the f32 path in disguise: the activations' rounding shows.
    expect(relativeError(got.logits[0], want.logits[0])).toBeGreaterThan(0);
    f32.dispose();
    auto.dispose();
  });

  it('1 and 2 threads (every product split) give the same bits', async () => {
    const source = { 'm.gguf': await file() };
    const ids = randomIds(20, 9);
    const one = await loadModel(source, { simd, threads: 1 });
    const two = await loadModel(source, { simd, threads: 2 });
    expect(two.threads).toBe(2);
    inside(two).decoder.ops.minChunkNs = 0;
    const a = run(one, ids, 4), b = run(two, ids, 4);
    a.logits.forEach((y, i) => expect(Array.from(b.logits[i]), `logits ${i}`).toEqual(Array.from(y)));
    one.dispose();
    two.dispose();
  });
});

describe('GGUF K-quants, refused', () => {
  it('a Q5_K tensor is UNSUPPORTED_DTYPE naming its type and tensor', async () => {
    const bytes = await file();
    const view = new DataView(bytes.buffer);
    const key = new TextEncoder().encode('blk.0.ffn_up.weight');
    for (let i = 0; i < bytes.length; i++) {
      if (view.getUint32(i, true) === key.length && bytes.subarray(i + 8, i + 8 + key.length).every((b, j) => b === key[j])) {
        const typeAt = i + 8 + key.length + 4 + 16;
        expect(view.getUint32(typeAt, true)).toBe(Q4_K);
        view.setUint32(typeAt, 13, true); // Q5_K: 176 bytes per 256, more than Q4_K's, so the data must still fit
        break;
      }
    }
    const err = await loadModel({ 'm.gguf': bytes }, { threads: 1 }).then(() => null, (e) => e);
    expect(err?.code).toBe('UNSUPPORTED_DTYPE');
    expect(err?.message).toMatch(/"blk\.0\.ffn_up\.weight" is Q5_K/);
  });
});
