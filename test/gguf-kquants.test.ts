// A GGUF whose matrices are Q4_K and Q6_K (as a Q4_K_M file mixes them), or Q5_K and Q6_K (as
// Q5_K_M), loaded with weights 'auto': the K-quant matrices stay in their super-blocks (q4k / q5k /
// q6k, read by assembly/kquants.ts)
// and give the logits of the same file widened exactly to f32 (weights 'f32'), but for the
// activations' int8 rounding per 256; the same greedy tokens; the same bits on 1 and 2 threads,
// with the multi-row products per row or as the packed integer GEMM (qgemm_kq).
// The file is written by our writer in F32, then the chosen tensors are quantised in place by a
// test-only Q4_K / Q5_K / Q6_K quantiser (plain rules, not llama.cpp's search: any valid blocks do, since
// both loads read the same ones). Likewise Q3_K and IQ4_XS beside Q6_K and Q8_0, kept by exact repacks
// (q6k, q8), fused where their forms agree.
import { describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../src/index.js';
import { parseGguf } from '../src/formats/gguf.js';
import { writeGguf } from '../src/formats/gguf-write.js';
import { decodeRow, f32ToF16Bits, f16BitsToF32, IQ4_VALUES, quantizeQ8_0 } from '../src/formats/quant-blocks.js';
import { parseConfig } from '../src/formats/config.js';
import { openSource } from '../src/formats/source.js';
import type { Ops } from '../src/model/ops.js';
import type { Weights } from '../src/model/weights.js';
import { BUILDS, relativeError } from './helpers.js';
import { makeRandomCheckpoint, tinyMlaConfig } from './reference/model.js';

const Q4_K = 12, Q5_K = 13, Q6_K = 14, Q3_K = 11, IQ4_XS = 23, IQ4_NL = 20, Q5_0 = 6, Q8_0 = 8;
const NAME: Record<number, string> = { [Q4_K]: 'Q4_K', [Q5_K]: 'Q5_K', [Q6_K]: 'Q6_K', [Q3_K]: 'Q3_K', [IQ4_XS]: 'IQ4_XS', [IQ4_NL]: 'IQ4_NL', [Q5_0]: 'Q5_0', [Q8_0]: 'Q8_0' };
/** Bytes per 256 values. */
const BLOCK_BYTES: Record<number, number> = { [Q4_K]: 144, [Q5_K]: 176, [Q6_K]: 210, [Q3_K]: 110, [IQ4_XS]: 136, [IQ4_NL]: 144, [Q5_0]: 176, [Q8_0]: 272 };

/**
 * One row of n values (a multiple of 256) as Q4_K, or Q5_K (five): per 32, scale (max − min)/15
 * (/31) and min ≤ 0; both to 6 bits per 256. Q5_K keeps each code's fifth bit in qh[l], bit j.
 */
function quantizeMinK(five: boolean, x: Float32Array, out: Uint8Array, at: number): void {
  const v = new DataView(out.buffer, out.byteOffset), top = five ? 31 : 15, qs = five ? 48 : 16;
  for (let sb = 0; sb < x.length / 256; sb++, at += BLOCK_BYTES[five ? Q5_K : Q4_K]) {
    const s = x.subarray(sb * 256, sb * 256 + 256), scale: number[] = [], min: number[] = [];
    for (let j = 0; j < 8; j++) {
      const sub = s.subarray(32 * j, 32 * j + 32);
      const lo = Math.min(0, ...sub), hi = Math.max(...sub);
      scale.push((hi - lo) / top); min.push(-lo);
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
    if (five) out.fill(0, at + 16, at + 48);
    for (let j = 0; j < 8; j++) {
      for (let l = 0; l < 32; l++) {
        const step = d * sc[j], q = step ? Math.max(0, Math.min(top, Math.round((s[32 * j + l] + dmin * mn[j]) / step))) : 0;
        const byte = at + qs + 32 * (j >> 1) + l;
        out[byte] = j & 1 ? (out[byte] & 15) | ((q & 15) << 4) : (out[byte] & 0xf0) | (q & 15);
        if (five) out[at + 16 + l] |= (q >> 4) << j;
      }
    }
  }
}

/** A super-block's scale per 16 (max|x| / top code) as integers 0..most of an f16 d = the largest scale / most. */
function scalesPer16(s: Float32Array, top: number, most: number): { d: number; sc: number[] } {
  const scale: number[] = [];
  for (let b = 0; b < 16; b++) scale.push(Math.max(...s.subarray(16 * b, 16 * b + 16).map(Math.abs)) / top);
  const d = f16BitsToF32(f32ToF16Bits(Math.max(...scale) / most));
  return { d, sc: scale.map((t) => (d ? Math.min(most, Math.round(t / d)) : 0)) };
}

/** One row as Q6_K: per 16, scale max|x|/31 to int8 over d = max scale/127; codes q + 32 in 0..63. */
function quantizeQ6K(x: Float32Array, out: Uint8Array, at: number): void {
  const v = new DataView(out.buffer, out.byteOffset);
  for (let sb = 0; sb < x.length / 256; sb++, at += 210) {
    const s = x.subarray(sb * 256, sb * 256 + 256), { d, sc } = scalesPer16(s, 31, 127);
    v.setUint16(at + 208, f32ToF16Bits(d), true);
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

/**
 * One row as Q3_K: per 16, scale max|x|/4 over d = max scale/31 (so s − 32 in 0..31, s in
 * 32..63); codes q in −4..3, the hmask bit set where q ≥ 0, the low two bits in qs.
 */
function quantizeQ3K(x: Float32Array, out: Uint8Array, at: number): void {
  const v = new DataView(out.buffer, out.byteOffset);
  for (let sb = 0; sb < x.length / 256; sb++, at += 110) {
    const s = x.subarray(sb * 256, sb * 256 + 256), { d, sc } = scalesPer16(s, 4, 31);
    v.setUint16(at + 108, f32ToF16Bits(d), true);
    out.fill(0, at, at + 108);
    for (let j = 0; j < 16; j++) {
      const six = sc[j] + 32;
      out[at + 96 + (j & 7)] |= (six & 15) << (j < 8 ? 0 : 4);
      out[at + 104 + (j & 3)] |= (six >> 4) << (2 * (j >> 2));
    }
    for (let i = 0; i < 256; i++) {
      const step = d * sc[i >> 4], q = step ? Math.max(-4, Math.min(3, Math.round(s[i] / step))) : 0;
      if (q >= 0) out[at + (i & 31)] |= 1 << (i >> 5);
      out[at + 32 + 32 * (i >> 7) + (i & 31)] |= ((q + 4) & 3) << (2 * ((i >> 5) & 3));
    }
  }
}

/** One row as IQ4_XS: per 32, scale max|x|/127 over d = max scale/31 (ls − 32 in 0..31); each value the nearest level. */
function quantizeIQ4XS(x: Float32Array, out: Uint8Array, at: number): void {
  const v = new DataView(out.buffer, out.byteOffset);
  for (let sb = 0; sb < x.length / 256; sb++, at += 136) {
    const s = x.subarray(sb * 256, sb * 256 + 256), scale: number[] = [];
    for (let k = 0; k < 8; k++) scale.push(Math.max(...s.subarray(32 * k, 32 * k + 32).map(Math.abs)) / 127);
    const d = f16BitsToF32(f32ToF16Bits(Math.max(...scale) / 31));
    v.setUint16(at, f32ToF16Bits(d), true);
    out.fill(0, at + 2, at + 136);
    for (let k = 0; k < 8; k++) {
      const ls = (d ? Math.min(31, Math.round(scale[k] / d)) : 0) + 32, step = d * (ls - 32);
      out[at + 4 + (k >> 1)] |= (ls & 15) << (4 * (k & 1));
      out[at + 2 + (k >> 2)] |= (ls >> 4) << (2 * (k & 3));
      iq4Codes(s.subarray(32 * k, 32 * k + 32), step, out, at + 8 + 16 * k);
    }
  }
}

/** 32 values as the nearest of IQ4's levels times `step`: nibbles into 16 bytes at out[at] (value j + 16 high in byte j). */
function iq4Codes(x: Float32Array, step: number, out: Uint8Array, at: number): void {
  out.fill(0, at, at + 16);
  for (let j = 0; j < 32; j++) {
    let best = 0;
    for (let c = 1; c < 16; c++) if (Math.abs(IQ4_VALUES[c] * step - x[j]) < Math.abs(IQ4_VALUES[best] * step - x[j])) best = c;
    out[at + (j & 15)] |= best << (j < 16 ? 0 : 4);
  }
}

/** One row as IQ4_NL: per 32, d = max|x|/127 (f16), each value the nearest level. */
function quantizeIQ4NL(x: Float32Array, out: Uint8Array, at: number): void {
  const v = new DataView(out.buffer, out.byteOffset);
  for (let b = 0; b < x.length / 32; b++, at += 18) {
    const s = x.subarray(32 * b, 32 * b + 32), d = f16BitsToF32(f32ToF16Bits(Math.max(...s.map(Math.abs)) / 127));
    v.setUint16(at, f32ToF16Bits(d), true);
    iq4Codes(s, d, out, at + 2);
  }
}

/** One row as Q5_0: per 32, d = max|x|/15 (f16), codes round(x/d) + 16 in 0..31, the fifth bit of value j at bit j of qh. */
function quantizeQ5_0(x: Float32Array, out: Uint8Array, at: number): void {
  const v = new DataView(out.buffer, out.byteOffset);
  for (let b = 0; b < x.length / 32; b++, at += 22) {
    const s = x.subarray(32 * b, 32 * b + 32), d = f16BitsToF32(f32ToF16Bits(Math.max(...s.map(Math.abs)) / 15));
    v.setUint16(at, f32ToF16Bits(d), true);
    out.fill(0, at + 6, at + 22);
    let qh = 0;
    for (let j = 0; j < 32; j++) {
      const q = (d ? Math.max(-16, Math.min(15, Math.round(s[j] / d))) : 0) + 16;
      qh |= (q >> 4) << j;
      out[at + 6 + (j & 15)] |= (q & 15) << (j < 16 ? 0 : 4);
    }
    v.setUint32(at + 2, qh >>> 0, true);
  }
}

/** `bytes` (an F32 GGUF) with the named tensors rewritten in place as Q4_K / Q5_K / Q6_K (Q3_K, IQ4_XS, Q8_0): type in the header, blocks at their offset. */
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
    const cols = t.ne[0], rows = t.bytes / 4 / cols, rb = (cols / 256) * BLOCK_BYTES[type];
    const values = new Float32Array(out.buffer.slice(t.begin, t.begin + t.bytes));
    const blocks = new Uint8Array(rows * rb);
    for (let r = 0; r < rows; r++) {
      const row = values.subarray(r * cols, (r + 1) * cols);
      if (type === Q6_K) quantizeQ6K(row, blocks, r * rb);
      else if (type === Q3_K) quantizeQ3K(row, blocks, r * rb);
      else if (type === IQ4_XS) quantizeIQ4XS(row, blocks, r * rb);
      else if (type === Q8_0) quantizeQ8_0(row, blocks, r * rb);
      else if (type === IQ4_NL) quantizeIQ4NL(row, blocks, r * rb);
      else if (type === Q5_0) quantizeQ5_0(row, blocks, r * rb);
      else quantizeMinK(type === Q5_K, row, blocks, r * rb);
    }
    out.fill(0, t.begin, t.begin + t.bytes);
    out.set(blocks, t.begin);
    // The blocks hold the values within a step of their grid (a check of the quantiser itself;
    // IQ4 tops out at 113 of 127 on the positive side).
    const back = new Float32Array(cols);
    let err = 0, top = 0;
    for (let r = 0; r < rows; r++) {
      decodeRow(NAME[type], blocks, r * rb, cols, back, 0);
      for (let i = 0; i < cols; i++) { err = Math.max(err, Math.abs(back[i] - values[r * cols + i])); top = Math.max(top, Math.abs(values[r * cols + i])); }
    }
    expect(err / top, `${name} round trip`).toBeLessThan({ [Q4_K]: 0.15, [Q5_K]: 0.08, [Q6_K]: 0.05, [Q3_K]: 0.3, [IQ4_XS]: 0.15, [IQ4_NL]: 0.15, [Q5_0]: 0.05, [Q8_0]: 0.01 }[type]!);
  }
  return out;
}

const config = tinyMlaConfig({ hidden_size: 256, intermediate_size: 512, q_lora_rank: 256, vocab_size: 64 });
/**
 * `low` (Q4_K or Q5_K) and Q6_K as a Q4_K_M / Q5_K_M file mixes them; layer 1's [q_a | kv_a] mixes
 * the two (kept as two parts, each in its own format); o_proj (48 columns) and kv_b stay F32.
 */
const types = (low: number): Record<string, number> => ({
  'token_embd.weight': low, 'output.weight': Q6_K,
  'blk.0.attn_q_a.weight': low, 'blk.0.attn_kv_a_mqa.weight': low, 'blk.0.attn_q_b.weight': Q6_K,
  'blk.0.ffn_gate.weight': low, 'blk.0.ffn_up.weight': low, 'blk.0.ffn_down.weight': Q6_K,
  'blk.1.attn_q_a.weight': low, 'blk.1.attn_kv_a_mqa.weight': Q6_K, 'blk.1.attn_q_b.weight': low,
  'blk.1.ffn_gate.weight': Q6_K, 'blk.1.ffn_up.weight': Q6_K, 'blk.1.ffn_down.weight': low,
});
const file = async (low = Q4_K) => {
  const src = await openSource({ config, tensors: makeRandomCheckpoint(config, 7) });
  return requantize(writeGguf(parseConfig(src.config), src.tensors, null, { type: 'F32' }), types(low));
};

const randomIds = (n: number, seed: number) => Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % 64);
const inside = (m: Model) => m as unknown as { decoder: { ops: Ops; w: Weights } };

/** Prefill logits, then greedy decode steps (or `forced` tokens): every step's logits and the greedy tokens. */
function run(m: Model, ids: number[], steps: number, forced?: number[]): { logits: Float32Array[]; tokens: number[] } {
  const s = m.createSession({ contextLength: ids.length + steps });
  const logits = [s.prefill(ids).slice()], tokens: number[] = [];
  for (let i = 0; i < steps; i++) {
    const last = logits[logits.length - 1];
    const next = last.indexOf(Math.max(...last));
    tokens.push(next);
    logits.push(s.step(forced ? forced[i] : next).slice());
  }
  s.dispose();
  return { logits, tokens };
}

/**
 * Largest |K-quant − f32| over the logits as a fraction of the largest |f32 logit|: the weights
 * are the same values; the products round the activations to int8 per 256 (Q8_K). The int8 / int4
 * formats (per 32) are held to 0.03 in weights-formats.test.ts; a scale per 256 is set by the
 * largest of 256 values rather than of 32 (about 1.4× the step for bell-shaped activations), so
 * 0.03 × 1.4 rounded up. (Measured: 0.030 with Q4_K, 0.032 with Q5_K, at the worst of 9 outputs, both builds.)
 */
const BOUND = 0.05;

const MIXES = BUILDS.flatMap((simd) => [[simd, 'Q4_K', Q4_K, 'q4k'], [simd, 'Q5_K', Q5_K, 'q5k']] as const);
describe.each(MIXES)('GGUF K-quants kept as stored (%s build, %s and Q6_K)', (simd, _name, low, fmt) => {
  it('weights auto: K-quant matrices, fewer bytes, logits near the f32 load, the same greedy tokens', async () => {
    const source = { 'm.gguf': await file(low) };
    const f32 = await loadModel(source, { simd, weights: 'f32', threads: 1 });
    const auto = await loadModel(source, { simd, weights: 'auto', threads: 1 });
    const w = inside(auto).decoder.w, l0 = w.layers[0], l1 = w.layers[1];
    expect([w.embed.format, w.lmHead.format]).toEqual([fmt, 'q6k']);
    expect([l0.wIn.format, l0.wqB!.format, l0.wGateUp!.format, l0.wDown!.format]).toEqual([fmt, 'q6k', fmt, 'q6k']);
    expect([l1.wIn.format, l1.wqB!.format, l1.wGateUp!.format, l1.wDown!.format, l1.wo.format]).toEqual(['mixed', fmt, 'q6k', fmt, 'f32']);
    const parts = l1.wIn.parts!;
    expect(parts.map((p) => [p.format, p.rows, p.cols])).toEqual([[fmt, 256, 256], ['q6k', config.kv_lora_rank + config.qk_rope_head_dim, 256]]);
    expect(auto.weightBytes).toBeLessThan(f32.weightBytes / 3);
    // Bytes: f32's less each K-quant matrix's 4 bytes a weight, plus its super-blocks (Q5_K: 5.5 bits a weight).
    const kept = [w.embed, w.lmHead, l0.wIn, l0.wqB!, l0.wGateUp!, l0.wDown!, ...parts, l1.wqB!, l1.wGateUp!, l1.wDown!];
    const bits = { q4k: 4.5, q5k: 5.5, q6k: 6.5625 } as Record<string, number>;
    expect(auto.weightBytes).toBe(f32.weightBytes - kept.reduce((t, m) => t + m.rows * m.cols * (4 - bits[m.format] / 8), 0));
    // memoryFor('auto') saves the same, but for each of the 15 matrices' alignment to 4 KiB (Q4_K's
    // size in place of Q5_K's would be off by 62 KiB).
    const saved = f32.memoryFor('f32').weights - auto.memoryFor('auto').weights;
    expect(Math.abs(saved - (f32.weightBytes - auto.weightBytes))).toBeLessThan(15 * 4096);
    const ids = randomIds(24, 5);
    // Decoded on the f32 load's tokens, so that every step's logits compare like for like.
    const want = run(f32, ids, 8), got = run(auto, ids, 8, want.tokens);
    got.logits.forEach((y, i) => expect(relativeError(y, want.logits[i]), `logits ${i}`).toBeLessThan(BOUND));
    // The same greedy tokens, but at a near tie: where f32's margin over our choice is within the
    // bound (the Q5_K_M-style file has two such steps, margins 0.4% and 2.2% of the largest logit).
    got.tokens.forEach((t, i) => {
      const y = want.logits[i], top = Math.max(...y.map(Math.abs));
      if (t !== want.tokens[i]) expect(y[want.tokens[i]] - y[t], `step ${i}: ${t} for f32's ${want.tokens[i]}`).toBeLessThan(BOUND * top);
    });
    // Not the f32 path in disguise: the activations' rounding shows.
    expect(relativeError(got.logits[0], want.logits[0])).toBeGreaterThan(0);
    f32.dispose();
    auto.dispose();
  });

  it('weights int8 / bf16 convert the K-quant matrices at load, near the f32 load', async () => {
    const source = { 'm.gguf': await file(low) };
    const f32 = await loadModel(source, { simd, weights: 'f32', threads: 1 });
    const ids = randomIds(24, 5), want = f32.forward(ids);
    // weights-formats.test.ts's bounds for the same conversions of f32 weights.
    for (const [weights, format, bound] of [['int8', 'q8', 0.03], ['bf16', 'bf16', 0.01]] as const) {
      const m = await loadModel(source, { simd, weights, threads: 1 });
      expect(inside(m).decoder.w.layers[0].wGateUp!.format).toBe(format);
      expect(relativeError(m.forward(ids), want), weights).toBeLessThan(bound);
      m.dispose();
    }
    f32.dispose();
  });

  it('1 and 2 threads (every product split) give the same bits', async () => {
    const source = { 'm.gguf': await file(low) };
    const ids = randomIds(20, 9);
    const one = await loadModel(source, { simd, threads: 1 });
    const two = await loadModel(source, { simd, threads: 2 });
    expect(two.threads).toBe(2);
    inside(two).decoder.ops.minChunkNs = 0;
    // The 20-row prefill's products per row (kqGemmRows past 20), then as qgemm_kq (the default).
    for (const m of [one, two]) inside(m).decoder.ops.kqGemmRows = Infinity;
    const a = run(one, ids, 4), b = run(two, ids, 4);
    a.logits.forEach((y, i) => expect(Array.from(b.logits[i]), `logits ${i}`).toEqual(Array.from(y)));
    for (const m of [one, two]) inside(m).decoder.ops.kqGemmRows = 12;
    const c = run(one, ids, 4), d = run(two, ids, 4);
    c.logits.forEach((y, i) => expect(Array.from(d.logits[i]), `qgemm_kq logits ${i}`).toEqual(Array.from(y)));
    // Not the same path in disguise (per 32 activations, not Q8_K's per 256), and as close to it as to f32.
    expect(Array.from(c.logits[0])).not.toEqual(Array.from(a.logits[0]));
    expect(relativeError(c.logits[0], a.logits[0])).toBeLessThan(BOUND);
    one.dispose();
    two.dispose();
  });
});

/**
 * Q3_K, IQ4_XS beside Q6_K, Q8_0: Q3_K repacks into Q6_K super-blocks and IQ4_XS into q8 blocks,
 * so layer 0's [q_a (Q3_K) | kv_a (Q6_K)] is one q6k matrix and its [gate (IQ4_XS) | up (Q8_0)]
 * one q8 matrix; layer 1's [q_a (IQ4_XS) | kv_a (Q3_K)] is kept as two parts, q8 and q6k. Layer
 * 0's q_b (IQ4_NL) and layer 1's down (Q5_0) are q8 too.
 */
const REPACKED: Record<string, number> = {
  'token_embd.weight': IQ4_XS, 'output.weight': Q6_K,
  'blk.0.attn_q_a.weight': Q3_K, 'blk.0.attn_kv_a_mqa.weight': Q6_K, 'blk.0.attn_q_b.weight': IQ4_NL,
  'blk.0.ffn_gate.weight': IQ4_XS, 'blk.0.ffn_up.weight': Q8_0, 'blk.0.ffn_down.weight': Q3_K,
  'blk.1.attn_q_a.weight': IQ4_XS, 'blk.1.attn_kv_a_mqa.weight': Q3_K, 'blk.1.attn_q_b.weight': Q3_K,
  'blk.1.ffn_gate.weight': Q3_K, 'blk.1.ffn_up.weight': Q3_K, 'blk.1.ffn_down.weight': Q5_0,
};
describe.each(BUILDS)('GGUF Q3_K and IQ4_XS kept by exact repacks (%s build)', (simd) => {
  it('fused as their forms agree; fewer bytes; logits near the f32 load; the same bits on 1 and 2 threads', async () => {
    const src = await openSource({ config, tensors: makeRandomCheckpoint(config, 7) });
    const source = { 'm.gguf': requantize(writeGguf(parseConfig(src.config), src.tensors, null, { type: 'F32' }), REPACKED) };
    const f32 = await loadModel(source, { simd, weights: 'f32', threads: 1 });
    const auto = await loadModel(source, { simd, weights: 'auto', threads: 1 });
    const w = inside(auto).decoder.w, l0 = w.layers[0], l1 = w.layers[1];
    expect([w.embed.format, w.lmHead.format]).toEqual(['q8', 'q6k']);
    expect([l0.wIn.format, l0.wqB!.format, l0.wGateUp!.format, l0.wDown!.format]).toEqual(['q6k', 'q8', 'q8', 'q6k']);
    expect([l1.wIn.format, l1.wqB!.format, l1.wGateUp!.format, l1.wDown!.format, l1.wo.format]).toEqual(['mixed', 'q6k', 'q6k', 'q8', 'f32']);
    const parts = l1.wIn.parts!;
    expect(parts.map((p) => p.format)).toEqual(['q8', 'q6k']);
    const kept = [w.embed, w.lmHead, l0.wIn, l0.wqB!, l0.wGateUp!, l0.wDown!, ...parts, l1.wqB!, l1.wGateUp!, l1.wDown!];
    const bits = { q8: 9, q6k: 6.5625 } as Record<string, number>;
    expect(auto.weightBytes).toBe(f32.weightBytes - kept.reduce((t, m) => t + m.rows * m.cols * (4 - bits[m.format] / 8), 0));
    const ids = randomIds(24, 5);
    const want = run(f32, ids, 8), got = run(auto, ids, 8, want.tokens);
    const worst = Math.max(...got.logits.map((y, i) => relativeError(y, want.logits[i])));
    console.log(`Q3_K / IQ4_XS file, ${simd}: largest relative logit error against the f32 load ${worst.toFixed(4)}`);
    expect(worst).toBeLessThan(BOUND);
    expect(worst).toBeGreaterThan(0);
    const two = await loadModel(source, { simd, weights: 'auto', threads: 2 });
    inside(two).decoder.ops.minChunkNs = 0;
    const b = run(two, ids, 8, want.tokens);
    got.logits.forEach((y, i) => expect(Array.from(b.logits[i]), `logits ${i}`).toEqual(Array.from(y)));
    for (const m of [f32, auto, two]) m.dispose();
  });
});

describe('GGUF K-quants, refused', () => {
  // Both fewer bytes per 256 than Q4_K's (84, 110), so the data still fits.
  it.each([['Q2_K', 10], ['IQ3_S', 21]] as const)('a %s tensor (no exact form of ours) is UNSUPPORTED_DTYPE naming its type and tensor', async (name, id) => {
    const bytes = await file();
    const view = new DataView(bytes.buffer);
    const key = new TextEncoder().encode('blk.0.ffn_up.weight');
    for (let i = 0; i < bytes.length; i++) {
      if (view.getUint32(i, true) === key.length && bytes.subarray(i + 8, i + 8 + key.length).every((b, j) => b === key[j])) {
        const typeAt = i + 8 + key.length + 4 + 16;
        expect(view.getUint32(typeAt, true)).toBe(Q4_K);
        view.setUint32(typeAt, id, true);
        break;
      }
    }
    const err = await loadModel({ 'm.gguf': bytes }, { threads: 1 }).then(() => null, (e) => e);
    expect(err?.code).toBe('UNSUPPORTED_DTYPE');
    expect(err?.message).toContain(`"blk.0.ffn_up.weight" is ${name}`);
  });
});
