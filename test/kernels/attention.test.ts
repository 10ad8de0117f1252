import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BUILDS, expectClose, kernelsFor, rng } from '../helpers.js';
import { attend } from '../reference/ops.js';
import type { SimdBuild } from '../../src/host/kernels.js';

type K = Awaited<ReturnType<typeof kernelsFor>>;

const SENTINEL = -12345.5;
const GUARD = 16;

interface Cfg {
  nq: number; qGroup: number; qPos0: number;
  dk1: number; dk2: number; dv: number;
  n: number; kPos0: number; scale: number;
  seed: number;
  /** Extra elements at the end of every row of q, k1, k2, v, acc and out (filled with NaN or sentinels). */
  pad?: number;
  /** v is k1 itself (MLA absorbed decode: the latent cache is both key and value). */
  sharedV?: boolean;
  /** Key rows masked for every query hold NaN: the kernel must never read them. */
  nanFuture?: boolean;
  /** Range of the random q and key entries. */
  range?: number;
  /** Custom key generator (row b, index i) → value, for structured score patterns. */
  key?: (b: number, i: number, q: Float32Array[]) => number;
}

interface Data { q: Float32Array[]; k1: Float32Array[]; k2: Float32Array[]; v: Float32Array[] }

const posOf = (c: Cfg, r: number) => c.qPos0 + Math.floor(r / c.qGroup);

function makeData(c: Cfg): Data {
  const r = rng(c.seed);
  const range = c.range ?? 1;
  const dk = c.dk1 + c.dk2;
  const q = Array.from({ length: c.nq }, () => Float32Array.from({ length: dk }, () => r(-range, range)));
  const maxPos = posOf(c, c.nq - 1);
  const k1: Float32Array[] = [], k2: Float32Array[] = [], v: Float32Array[] = [];
  for (let b = 0; b < c.n; b++) {
    const future = c.nanFuture && c.kPos0 + b > maxPos;
    const key = Float32Array.from({ length: dk }, (_, i) => future ? NaN : c.key ? c.key(b, i, q) : r(-range, range));
    k1.push(key.slice(0, c.dk1));
    k2.push(key.slice(c.dk1));
    v.push(c.sharedV ? k1[b] : Float32Array.from({ length: c.dv }, () => future ? NaN : r(-1, 1)));
  }
  return { q, k1, k2, v };
}

/** Float64 reference: for each query, `attend` over the keys its position may see. */
function reference(c: Cfg, d: Data): Float64Array[] {
  const scale = Math.fround(c.scale);
  return d.q.map((q, r) => {
    const keys: Float32Array[] = [], vals: Float32Array[] = [];
    for (let b = 0; b < c.n; b++) {
      if (c.kPos0 + b > posOf(c, r)) continue;
      const key = new Float32Array(c.dk1 + c.dk2);
      key.set(d.k1[b]); key.set(d.k2[b], c.dk1);
      keys.push(key);
      vals.push(c.sharedV ? d.k1[b].subarray(0, c.dv) : d.v[b]);
    }
    if (keys.length === 0) throw new Error(`test setup: query ${r} sees no key`);
    return attend(q, keys, vals, scale);
  });
}

/** Rows of `w` values at `stride` (≥ w), gaps filled with `fill`, plus GUARD sentinels after. */
function pack(rows: ArrayLike<number>[], w: number, stride: number, fill: number): Float32Array {
  const a = new Float32Array(rows.length * stride + GUARD).fill(fill);
  a.fill(SENTINEL, rows.length * stride);
  rows.forEach((row, i) => a.set(Array.prototype.slice.call(row, 0, w), i * stride));
  return a;
}

class Arena {
  private blocks: [number, number][] = [];
  constructor(readonly k: K) {}
  put(data: Float32Array): number {
    const p = this.k.heap.alloc(data.length * 4);
    this.k.heap.f32(p, data.length).set(data);
    this.blocks.push([p, data.length * 4]);
    return p;
  }
  filled(n: number, value: number): number { return this.put(new Float32Array(n).fill(value)); }
  free() { for (const [p, b] of this.blocks) this.k.heap.release(p, b); this.blocks = []; }
}

interface Run {
  out: Float32Array[];
  state: { m: Float32Array; l: Float32Array };
}

/**
 * q, keys and values in the arena with padded rows (each stride different, the padding NaN:
 * reading past a row's end would poison the result); values in the first key part when sharedV.
 */
function placeInputs(A: Arena, c: Cfg, d: Data) {
  const pad = c.pad ?? 0;
  const dk = c.dk1 + c.dk2;
  const qStride = dk + pad, k1Stride = c.dk1 + pad + 1, k2Stride = c.dk2 + pad + 2;
  const vStride = c.sharedV ? k1Stride : c.dv + pad + 3;
  const qP = A.put(pack(d.q, dk, qStride, NaN));
  const k1P = A.put(pack(d.k1, c.dk1, k1Stride, NaN));
  const k2P = A.put(pack(d.k2, c.dk2, k2Stride, NaN));
  const vP = c.sharedV ? k1P : A.put(pack(d.v, c.dv, vStride, NaN));
  return { pad, qP, k1P, k2P, vP, qStride, k1Stride, k2Stride, vStride };
}

/**
 * Run attn_init, attn_block over `blocks` (sizes summing to n, in order), attn_finish, and check
 * that nothing outside the outputs was written.
 */
function runKernel(k: K, c: Cfg, d: Data, blocks: number[], finishInPlace = false): Run {
  expect(blocks.reduce((s, x) => s + x, 0)).toBe(c.n);
  const A = new Arena(k);
  try {
    const { pad, qP, k1P, k2P, vP, qStride, k1Stride, k2Stride, vStride } = placeInputs(A, c, d);
    const accStride = c.dv + pad, outStride = c.dv + pad + 1;
    const mP = A.filled(c.nq + GUARD, SENTINEL), lP = A.filled(c.nq + GUARD, SENTINEL);
    const accLen = c.nq * accStride;
    const accP = A.filled(accLen + GUARD, SENTINEL);
    const outLen = c.nq * outStride;
    const outP = finishInPlace ? accP : A.filled(outLen + GUARD, SENTINEL);
    const scratchBytes = k.kernels.attn_scratch_bytes(c.nq);
    expect(scratchBytes % 4).toBe(0);
    const scratchP = A.filled(scratchBytes / 4 + GUARD, SENTINEL);
    const inputs = [qP, k1P, k2P, vP].map((p, i) => k.heap.f32(p, [d.q.length * qStride, c.n * k1Stride, c.n * k2Stride, c.n * vStride][i] + GUARD).slice());

    k.kernels.attn_init(mP, lP, accP, c.nq, c.dv, accStride);
    let start = 0;
    for (const nb of blocks) {
      k.kernels.attn_block(qP, qStride, c.nq, c.qPos0, c.qGroup, c.dk1, c.dk2,
        k1P + start * k1Stride * 4, k1Stride, k2P + start * k2Stride * 4, k2Stride,
        vP + start * vStride * 4, vStride, c.dv, nb, c.kPos0 + start, c.scale,
        mP, lP, accP, accStride, scratchP);
      start += nb;
    }
    const state = { m: k.heap.f32(mP, c.nq).slice(), l: k.heap.f32(lP, c.nq).slice() };
    k.kernels.attn_finish(lP, accP, accStride, c.nq, c.dv, outP, finishInPlace ? accStride : outStride);

    const oStride = finishInPlace ? accStride : outStride;
    const outBuf = k.heap.f32(outP, c.nq * oStride + GUARD);
    const out = Array.from({ length: c.nq }, (_, r) => outBuf.slice(r * oStride, r * oStride + c.dv));
    // Nothing written outside the outputs.
    const expectUntouched = (p: number, from: number, to: number, what: string) => {
      const a = k.heap.f32(p, to);
      for (let i = from; i < to; i++) if (a[i] !== SENTINEL) expect.fail(`${what}: element ${i} was written (${a[i]})`);
    };
    expectUntouched(mP, c.nq, c.nq + GUARD, 'm guard');
    expectUntouched(lP, c.nq, c.nq + GUARD, 'l guard');
    for (let r = 0; r < c.nq; r++) expectUntouched(accP, r * accStride + c.dv, (r + 1) * accStride, `acc gap after row ${r}`);
    expectUntouched(accP, accLen, accLen + GUARD, 'acc guard');
    if (!finishInPlace) {
      for (let r = 0; r < c.nq; r++) expectUntouched(outP, r * outStride + c.dv, (r + 1) * outStride, `out gap after row ${r}`);
      expectUntouched(outP, outLen, outLen + GUARD, 'out guard');
    }
    expectUntouched(scratchP, scratchBytes / 4, scratchBytes / 4 + GUARD, 'scratch guard');
    // Inputs are read only.
    [qP, k1P, k2P, vP].forEach((p, i) => {
      const now = k.heap.f32(p, inputs[i].length);
      for (let j = 0; j < now.length; j++) {
        if (!Object.is(now[j], inputs[i][j])) expect.fail(`input ${['q', 'k1', 'k2', 'v'][i]} changed at ${j}`);
      }
    });
    return { out, state };
  } finally {
    A.free();
  }
}

function expectOut(got: Float32Array[], expected: Float64Array[], rtol: number, atol: number, what: string) {
  const g = new Float32Array(got.length * (got[0]?.length ?? 0));
  const e = new Float64Array(g.length);
  got.forEach((row, r) => { g.set(row, r * row.length); e.set(expected[r], r * row.length); });
  for (let i = 0; i < g.length; i++) if (Number.isNaN(g[i])) expect.fail(`${what}: NaN at ${i}`);
  expectClose(g, e, rtol, atol, what);
}

// Default tolerance: f32 dot products, exp to ~1 ulp and f32 accumulation over the keys, relative
// to values of size ~1. Cases with large scores derive theirs from the score's f32 ulp.
const RTOL = 1e-5, ATOL = 5e-7;

function check(k: K, c: Cfg, blockings: number[][], what: string, rtol = RTOL, atol = ATOL): Float32Array[][] {
  const d = makeData(c);
  const expected = reference(c, d);
  return blockings.map((blocks) => {
    const { out } = runKernel(k, c, d, blocks);
    expectOut(out, expected, rtol, atol, `${what}, blocks [${blocks.join(', ')}]`);
    return out;
  });
}

/** Uneven block sizes summing to n. */
function uneven(n: number): number[] {
  const sizes = [1, 2, 61, 64, 65, 7, 33, 129];
  const out: number[] = [];
  let left = n;
  for (let i = 0; left > 0; i++) {
    const s = Math.min(left, sizes[i % sizes.length]);
    out.push(s);
    left -= s;
  }
  return out;
}

describe.each(BUILDS)('online-softmax attention (%s build)', (build: SimdBuild) => {
  const mla = { dk1: 512, dk2: 64, dv: 512, sharedV: true, scale: 1 / Math.sqrt(192) };

  it('MLA absorbed decode shape: 16 heads at one position, dk 512 + 64, v = the latent (dv 512)', async () => {
    const k = await kernelsFor(build);
    const n = 300;
    check(k, { ...mla, nq: 16, qGroup: 16, qPos0: n - 1, n, kPos0: 0, seed: 1 }, [[n], [64, 1, 100, 135], uneven(n)], 'decode');
  });

  it('one query, one key (dk 1, dv 1 and dk 7, dv 5, dk2 = 0)', async () => {
    const k = await kernelsFor(build);
    check(k, { nq: 1, qGroup: 1, qPos0: 0, dk1: 1, dk2: 0, dv: 1, n: 1, kPos0: 0, scale: 1, seed: 2 }, [[1]], 'n=1 dk=1');
    check(k, { nq: 1, qGroup: 1, qPos0: 5, dk1: 7, dk2: 0, dv: 5, n: 1, kPos0: 5, scale: 0.3, seed: 3 }, [[1]], 'n=1 dk=7');
    check(k, { nq: 3, qGroup: 3, qPos0: 9, dk1: 7, dk2: 2, dv: 5, n: 1, kPos0: 0, scale: 0.3, seed: 4, pad: 3 }, [[1]], 'n=1 nq=3');
  });

  describe('query tiles and remainders (nq, qGroup)', () => {
    for (const nq of [1, 2, 3, 4, 5, 7, 8, 13]) {
      for (const qGroup of [1, 3, nq]) {
        it(`nq ${nq}, qGroup ${qGroup}`, async () => {
          const k = await kernelsFor(build);
          // Queries at positions 100 + r/qGroup over keys 0..(last position): causal within the last rows.
          const last = 100 + Math.floor((nq - 1) / qGroup);
          check(k, { nq, qGroup, qPos0: 100, dk1: 33, dk2: 5, dv: 19, n: last + 1, kPos0: 0, scale: 0.2, seed: nq * 10 + qGroup, pad: 2 },
            [[last + 1], uneven(last + 1)], `nq ${nq} qGroup ${qGroup}`);
        });
      }
    }
  });

  it.each([
    // dk1, dk2, dv: dk2 = 0 and > 0, dv ≠ dk, every remainder of 4 and 8 in dk and dv
    [24, 0, 40], [17, 3, 9], [16, 16, 23], [5, 1, 8], [3, 0, 3], [64, 64, 1], [2, 7, 4], [129, 0, 130], [1, 1, 17],
  ])('dk1 %i, dk2 %i, dv %i', async (dk1, dk2, dv) => {
    const k = await kernelsFor(build);
    for (const nq of [4, 6, 7]) {
      check(k, { nq, qGroup: nq, qPos0: 200, dk1, dk2, dv, n: 131, kPos0: 70, scale: 1 / Math.sqrt(dk1 + dk2), seed: dk1 * 7 + dk2 + dv, pad: 1 },
        [[131], [64, 67], uneven(131)], `dk ${dk1}+${dk2} dv ${dv} nq ${nq}`);
    }
  });

  it.each([1, 63, 64, 65, 127, 128, 129, 200])('n %i (around the 64-key sub-block)', async (n) => {
    const k = await kernelsFor(build);
    check(k, { nq: 5, qGroup: 5, qPos0: n - 1, dk1: 20, dk2: 4, dv: 12, n, kPos0: 0, scale: 0.25, seed: n }, [[n], uneven(n)], `n ${n}`);
  });

  it('split into uneven blocks gives the answer of one call (to rounding)', async () => {
    const k = await kernelsFor(build);
    const n = 777;
    const c: Cfg = { ...mla, nq: 8, qGroup: 8, qPos0: n - 1, n, kPos0: 0, seed: 5 };
    const [one, ...splits] = check(k, c, [[n], uneven(n), [1, 776], [776, 1], [300, 300, 177]], 'split');
    // Sub-block boundaries move, so f32 rounding differs a little, nothing more.
    for (const s of splits) expectOut(s, one.map((r) => Float64Array.from(r)), 1e-5, 1e-6, 'split vs one call');
  });

  it('prefill shape: T queries at positions p..p+T-1 (3 heads each) over keys 0..p+T-1', async () => {
    const k = await kernelsFor(build);
    const p = 50, T = 37, H = 3;
    const c: Cfg = { nq: T * H, qGroup: H, qPos0: p, dk1: 48, dk2: 16, dv: 40, n: p + T, kPos0: 0, scale: 0.15, seed: 6, pad: 1 };
    check(k, c, [[p + T], [20, 45, 22], uneven(p + T), [p, T]], 'prefill');
    // Naive-prefill shape: one head, every query its own position, position 0 included.
    check(k, { ...c, nq: 70, qGroup: 1, qPos0: 0, n: 70, seed: 7 }, [[70], [1, 1, 68], uneven(70)], 'prefill from 0');
  });

  it('keys masked for every query are never read (NaN there), some blocks fully masked for some queries', async () => {
    const k = await kernelsFor(build);
    // Queries at 10..29 (one per position), keys 0..99: keys 30..99 are NaN.
    const c: Cfg = { nq: 20, qGroup: 1, qPos0: 10, dk1: 24, dk2: 8, dv: 16, n: 100, kPos0: 0, scale: 0.3, seed: 8, nanFuture: true };
    check(k, c, [[100], [12, 3, 5, 80], uneven(100), [15, 15, 70]], 'nan future');
    // Decode shape with garbage past the current position (a cache allocated longer than filled).
    check(k, { ...mla, nq: 16, qGroup: 16, qPos0: 90, n: 160, kPos0: 0, seed: 9, nanFuture: true }, [[160], [91, 69], uneven(160)], 'nan past decode position');
  });

  it('a block masked for every query leaves m, l and acc exactly unchanged', async () => {
    const k = await kernelsFor(build);
    const nq = 6, dv = 9, dk = 10, n = 70;
    const r = rng(10);
    const A = new (class { ptrs: number[] = []; put(a: Float32Array) { const p = k.heap.alloc(a.length * 4); k.heap.f32(p, a.length).set(a); return p; } })();
    const q = A.put(Float32Array.from({ length: nq * dk }, () => r()));
    const keys = A.put(Float32Array.from({ length: n * dk }, () => r()));
    const vals = A.put(Float32Array.from({ length: n * dv }, () => r()));
    const m = A.put(new Float32Array(nq)), l = A.put(new Float32Array(nq)), acc = A.put(new Float32Array(nq * dv));
    const scratch = A.put(new Float32Array(k.kernels.attn_scratch_bytes(nq) / 4));
    k.kernels.attn_init(m, l, acc, nq, dv, dv);
    // Queries at positions 40..45; first the keys 0..39, then 40 keys at positions 46..85.
    k.kernels.attn_block(q, dk, nq, 40, 1, dk, 0, keys, dk, 0, 0, vals, dv, dv, 40, 0, 0.5, m, l, acc, dv, scratch);
    const before = [k.heap.f32(m, nq).slice(), k.heap.f32(l, nq).slice(), k.heap.f32(acc, nq * dv).slice()];
    k.kernels.attn_block(q, dk, nq, 40, 1, dk, 0, keys, dk, 0, 0, vals, dv, dv, 40, 46, 0.5, m, l, acc, dv, scratch);
    const after = [k.heap.f32(m, nq).slice(), k.heap.f32(l, nq).slice(), k.heap.f32(acc, nq * dv).slice()];
    for (let i = 0; i < 3; i++) expect(Array.from(after[i])).toEqual(Array.from(before[i]));
    // And a query that has seen no key yet keeps m = −inf, l = 0, acc = 0.
    k.kernels.attn_init(m, l, acc, nq, dv, dv);
    k.kernels.attn_block(q, dk, nq, 40, 1, dk, 0, keys, dk, 0, 0, vals, dv, dv, 40, 46, 0.5, m, l, acc, dv, scratch);
    expect(Array.from(k.heap.f32(m, nq))).toEqual(new Array(nq).fill(-Infinity));
    expect(Array.from(k.heap.f32(l, nq))).toEqual(new Array(nq).fill(0));
    expect(Array.from(k.heap.f32(acc, nq * dv))).toEqual(new Array(nq * dv).fill(0));
  });

  it('large scores (scale 50) that overflow a naive softmax', async () => {
    const k = await kernelsFor(build);
    // q, k in [−1, 1], dk 16, scale 50: scores up to ±800, spreads of hundreds between keys.
    // An f32 score of ~300 is only known to ~1 ulp = 3e-5, and the output moves by that much times
    // |v| ≤ 1: hence atol 3e-5 here (the other cases see ~1e-7 against their 5e-7).
    const c: Cfg = { nq: 9, qGroup: 3, qPos0: 150, dk1: 12, dk2: 4, dv: 20, n: 153, kPos0: 0, scale: 50, seed: 11 };
    check(k, c, [[153], uneven(153), [1, 152]], 'scale 50', 1e-5, 3e-5);
    // The running max moves up in every block (alpha underflows to 0 each time) …
    const up: Cfg = { ...c, qGroup: 9, qPos0: 200, seed: 12, key: (b, i, q) => q[0][i] * (0.01 * b) };
    check(k, up, [[153], uneven(153), new Array(153).fill(1)], 'max rises', 1e-5, 3e-5);
    // … or is found first and never moves again.
    const down: Cfg = { ...up, seed: 13, key: (b, i, q) => q[0][i] * (1.5 - 0.01 * b) };
    check(k, down, [[153], uneven(153)], 'max falls', 1e-5, 3e-5);
  });

  it('long context: 5000 keys, MLA decode shape, one call and several', async () => {
    const k = await kernelsFor(build);
    const n = 5000;
    check(k, { ...mla, nq: 16, qGroup: 16, qPos0: n - 1, n, kPos0: 0, seed: 14 }, [[n], [1000, 1, 2047, 1952]], 'long context');
  });

  it('a context at a large position offset (kPos0 > 0), dk2 = 0, separate values', async () => {
    const k = await kernelsFor(build);
    check(k, { nq: 4, qGroup: 2, qPos0: 100500, dk1: 40, dk2: 0, dv: 24, n: 502, kPos0: 100000, scale: 0.2, seed: 15 },
      [[502], uneven(502)], 'offset');
  });

  it('attn_finish in place (out = acc)', async () => {
    const k = await kernelsFor(build);
    const c: Cfg = { nq: 5, qGroup: 1, qPos0: 20, dk1: 8, dk2: 3, dv: 13, n: 25, kPos0: 0, scale: 0.4, seed: 16, pad: 2 };
    const d = makeData(c);
    const { out } = runKernel(k, c, d, [25], true);
    expectOut(out, reference(c, d), RTOL, ATOL, 'finish in place');
  });

  describe('attn_merge: keys split into segments with states of their own, merged in order', () => {
    /**
     * Segment i (sizes summing to n) from attn_init, each merged into segment 0's state, then attn_finish.
     * A first segment of 0 keys merges everything into a state that saw no key.
     */
    function runSegments(k: K, c: Cfg, d: Data, segments: number[]): Float32Array[] {
      expect(segments.reduce((s, x) => s + x, 0)).toBe(c.n);
      const A = new Arena(k);
      try {
        const { pad, qP, k1P, k2P, vP, qStride, k1Stride, k2Stride, vStride } = placeInputs(A, c, d);
        const accStride = c.dv + pad, acc2Stride = c.dv + pad + 2;
        const state = (stride: number) => ({ m: A.filled(c.nq + GUARD, SENTINEL), l: A.filled(c.nq + GUARD, SENTINEL), acc: A.filled(c.nq * stride + GUARD, SENTINEL) });
        const main = state(accStride), other = state(acc2Stride);
        const scratch = A.filled(k.kernels.attn_scratch_bytes(c.nq) / 4, SENTINEL);
        let start = 0;
        segments.forEach((nb, i) => {
          const s = i === 0 ? main : other, stride = i === 0 ? accStride : acc2Stride;
          k.kernels.attn_init(s.m, s.l, s.acc, c.nq, c.dv, stride);
          k.kernels.attn_block(qP, qStride, c.nq, c.qPos0, c.qGroup, c.dk1, c.dk2, k1P + start * k1Stride * 4, k1Stride,
            k2P + start * k2Stride * 4, k2Stride, vP + start * vStride * 4, vStride, c.dv, nb, c.kPos0 + start, c.scale,
            s.m, s.l, s.acc, stride, scratch);
          start += nb;
          if (i === 0) return;
          const before = [other.m, other.l, other.acc].map((p, j) => k.heap.f32(p, j < 2 ? c.nq + GUARD : c.nq * acc2Stride + GUARD).slice());
          k.kernels.attn_merge(main.m, main.l, main.acc, accStride, other.m, other.l, other.acc, acc2Stride, c.nq, c.dv);
          [other.m, other.l, other.acc].forEach((p, j) => {
            const now = k.heap.f32(p, before[j].length);
            for (let x = 0; x < now.length; x++) if (!Object.is(now[x], before[j][x])) expect.fail(`merge wrote its second state at ${j}/${x}`);
          });
        });
        k.kernels.attn_finish(main.l, main.acc, accStride, c.nq, c.dv, main.acc, accStride);
        const guard = (p: number, from: number, to: number, what: string) => {
          const a = k.heap.f32(p, to);
          for (let i = from; i < to; i++) if (a[i] !== SENTINEL) expect.fail(`${what}: element ${i} was written (${a[i]})`);
        };
        guard(main.m, c.nq, c.nq + GUARD, 'm guard');
        guard(main.l, c.nq, c.nq + GUARD, 'l guard');
        for (let r = 0; r < c.nq; r++) guard(main.acc, r * accStride + c.dv, (r + 1) * accStride, `acc gap after row ${r}`);
        guard(main.acc, c.nq * accStride, c.nq * accStride + GUARD, 'acc guard');
        const out = k.heap.f32(main.acc, c.nq * accStride);
        return Array.from({ length: c.nq }, (_, r) => out.slice(r * accStride, r * accStride + c.dv));
      } finally {
        A.free();
      }
    }

    it.each([
      ['MLA decode, 16 heads', { ...mla, nq: 16, qGroup: 16, qPos0: 999, n: 1000, kPos0: 0, seed: 31 }, [[512, 488], [256, 256, 256, 232], [1, 998, 1], [64, 1, 935], [0, 1000], [0, 500, 500]]],
      ['odd dims, 1 key a segment', { nq: 5, qGroup: 5, qPos0: 20, dk1: 7, dk2: 2, dv: 9, n: 21, kPos0: 0, scale: 0.4, seed: 32, pad: 1 }, [[1, 1, 19], new Array(21).fill(1)]],
      // Causal: queries at 40..45 over keys 0..45; later segments are wholly masked for the early queries.
      ['prefill, segments masked for some queries', { nq: 6, qGroup: 1, qPos0: 40, dk1: 12, dk2: 4, dv: 17, n: 46, kPos0: 0, scale: 0.3, seed: 33, nanFuture: true }, [[41, 5], [40, 3, 3], [20, 20, 1, 1, 4]]],
      ['large scores (scale 50): the later segment holds the max', { nq: 4, qGroup: 4, qPos0: 152, dk1: 12, dk2: 4, dv: 20, n: 153, kPos0: 0, scale: 50, seed: 34,
        key: (b: number, i: number, q: Float32Array[]) => q[0][i] * (0.01 * b) }, [[76, 77], [1, 152], [150, 3]]],
    ] as [string, Cfg, number[][]][])('%s', async (what, c, splits) => {
      const k = await kernelsFor(build);
      const d = makeData(c);
      const expected = reference(c, d);
      const atol = c.scale === 50 ? 3e-5 : ATOL; // see 'large scores' above
      for (const segments of splits) expectOut(runSegments(k, c, d, segments), expected, RTOL, atol, `${what}, segments [${segments.join(', ')}]`);
    });
  });

  it('attn_scratch_bytes grows with nq and is 0 for nq = 0', async () => {
    const k = await kernelsFor(build);
    expect(k.kernels.attn_scratch_bytes(0)).toBe(0);
    const one = k.kernels.attn_scratch_bytes(1);
    expect(one).toBeGreaterThan(0);
    expect(k.kernels.attn_scratch_bytes(128)).toBe(128 * one);
  });
});

// ---------------------------------------------------------------------------------------------
// The vector exp of assembly/math.ts. The kernel module does not export it, so a tiny module
// exporting its test hooks is compiled from the same source here, for both builds.

async function compileMath(relaxed: boolean): Promise<{ exp: (x: Float32Array) => Float32Array; expSoftmax: (x: Float32Array) => Float32Array }> {
  const { default: asc } = await import('assemblyscript/asc');
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const entry = path.join(root, 'assembly', '__math_test_entry.ts');
  let wasm: Uint8Array | undefined;
  const errors: string[] = [];
  const res = await asc.main([path.relative(root, entry), '--outFile', 'math-test.wasm', '--runtime', 'stub',
    '--enable', relaxed ? 'simd,relaxed-simd' : 'simd', '-O3', '--noAssert', '--use', 'abort=', '--baseDir', root], {
    readFile: (name: string, baseDir: string) => {
      const full = path.resolve(baseDir, name);
      if (full === entry) return 'export { exp_array, exp_softmax_array } from "./math";';
      try { return fs.readFileSync(full, 'utf8'); } catch { return null; }
    },
    writeFile: (name: string, contents: Uint8Array | string) => { if (name.endsWith('.wasm')) wasm = contents as Uint8Array; },
    listFiles: () => [],
    stdout: { write: () => true } as any,
    stderr: { write: (s: string) => { errors.push(String(s)); return true; } } as any,
  });
  if (res.error || !wasm) throw new Error(`asc failed: ${res.error}\n${errors.join('')}`);
  const module = await WebAssembly.compile(wasm as BufferSource);
  const memory = new WebAssembly.Memory({ initial: 512 });
  const imports: WebAssembly.Imports = WebAssembly.Module.imports(module).some((i) => i.kind === 'memory') ? { env: { memory } } : {};
  const inst = await WebAssembly.instantiate(module, imports);
  const ex = inst.exports as any;
  ex._initialize?.();
  const mem: WebAssembly.Memory = ex.memory ?? memory;
  const call = (fn: (x: number, y: number, n: number) => void) => (x: Float32Array) => {
    const base = 65536, bytes = x.length * 4;
    const need = base + 2 * bytes;
    if (mem.buffer.byteLength < need) mem.grow(Math.ceil((need - mem.buffer.byteLength) / 65536));
    new Float32Array(mem.buffer, base, x.length).set(x);
    fn(base, base + bytes, x.length);
    return new Float32Array(mem.buffer, base + bytes, x.length).slice();
  };
  return { exp: call(ex.exp_array), expSoftmax: call(ex.exp_softmax_array) };
}

/** |got − exp(x)| in units of the f32 ulp at exp(x) (subnormal ulp 2^-149 below FLT_MIN). */
function ulpError(got: number, x: number): number {
  const e = Math.exp(x);
  if (e >= 3.4028234663852886e38) return got === Infinity ? 0 : Infinity;
  const ulp = e < 2 ** -126 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(Math.fround(e))) - 23);
  return Math.abs(got - e) / ulp;
}

describe.each(BUILDS)('vector exp (assembly/math.ts, %s build)', (build: SimdBuild) => {
  let compiled: ReturnType<typeof compileMath> | undefined;
  const math = () => (compiled ??= compileMath(build === 'relaxed'));

  it('within 2 ulp of Math.exp from −104 to 89, subnormals included', async () => {
    const { exp } = await math();
    const N = 1 << 20;
    const x = new Float32Array(N);
    const r = rng(21);
    for (let i = 0; i < N; i++) x[i] = i < N / 2 ? -104 + 193 * (i / (N / 2)) : r(-104, 89);
    const y = exp(x);
    let worst = 0, at = 0;
    for (let i = 0; i < N; i++) {
      const u = ulpError(y[i], x[i]);
      if (u > worst) { worst = u; at = x[i]; }
    }
    expect(worst, `worst ${worst} ulp at x = ${at}`).toBeLessThanOrEqual(2);
  });

  it('special values: 0, ±inf, NaN, overflow and underflow edges, small |x|', async () => {
    const { exp } = await math();
    const xs = [0, -0, 1, -1, 1e-8, -1e-8, 1e-30, Infinity, -Infinity, NaN, 88.72, 88.73, 89, 1000, 1e30,
      -87.33, -87.34, -103.9, -103.98, -104, -105, -200, -1000, -1e30, -3.4e38];
    const y = exp(Float32Array.from(xs));
    const f = Float32Array.from(xs);
    expect(y[0]).toBe(1);
    expect(y[1]).toBe(1);
    expect(y[7]).toBe(Infinity);
    expect(y[8]).toBe(0);
    expect(Number.isNaN(y[9])).toBe(true);
    expect(Number.isFinite(y[10])).toBe(true);
    for (const i of [11, 12, 13, 14]) expect(y[i]).toBe(Infinity);
    for (const i of [19, 20, 21, 22, 23, 24]) expect(y[i]).toBe(0);
    for (const i of [2, 3, 4, 5, 6, 10, 15, 16, 17, 18]) {
      expect(ulpError(y[i], f[i]), `x = ${f[i]}`).toBeLessThanOrEqual(2);
    }
    expect(y[17]).toBeGreaterThan(0); // a subnormal, not flushed
  });

  it('softmax variant: ≤ 2 ulp on [−87.3, 0], exactly 0 below (no subnormal), exp(−inf) = 0', async () => {
    const { expSoftmax } = await math();
    const N = 1 << 18;
    const x = new Float32Array(N);
    for (let i = 0; i < N; i++) x[i] = -87.3 * (i / (N - 1));
    const y = expSoftmax(x);
    let worst = 0, at = 0;
    for (let i = 0; i < N; i++) {
      const u = ulpError(y[i], x[i]);
      if (u > worst) { worst = u; at = x[i]; }
    }
    expect(worst, `worst ${worst} ulp at x = ${at}`).toBeLessThanOrEqual(2);
    const tail = expSoftmax(Float32Array.from([-87.31, -87.4, -100, -150, -1e30, -Infinity, 0, -0]));
    expect(Array.from(tail)).toEqual([0, 0, 0, 0, 0, 0, 1, 1]);
    expect(y.every((v) => v === 0 || v >= 2 ** -126)).toBe(true);
  });
});
