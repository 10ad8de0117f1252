// node scripts/run-ts.mjs scripts/cache-grouping.ts
//
// Which layout for the int8/int4 latent cache: one scale per token row, or one per group of 32
// values, and k^R in bf16 or f32? Measured on the built-in model's held-out fortunes
// (val_records.json, windows of 192 as `mla-wasm perplexity --window 192`) by rounding each cache
// row as it is written (quantise, then dequantise in place) and running the f32 kernels on it:
// the storage's own loss, without the query's quantisation the kernels add.
import { readFileSync } from 'node:fs';
import { loadModel, type MlaAttention } from '../src/internal.js';

const model = await loadModel(undefined, { threads: 1 });
const tok = model.tokenizer!;
const a = model.config.attention as MlaAttention;
const dc = a.kvLoraRank, dr = a.ropeDim, row = dc + dr, L = model.config.layers, V = model.config.vocabSize;
const text = (JSON.parse(readFileSync('models/fortune-mla/val_records.json', 'utf8')) as string[]).join('\n\n') + '\n';
const ids = tok.encode(text, { addSpecialTokens: false });
const bos = tok.bosTokenId ?? model.config.bosTokenId!;
const W = 192, bytes = new TextEncoder().encode(text).length;

/** Round x[0..n) to `bits`-bit symmetric codes, `group` values per scale (round to nearest). */
function fake(x: Float32Array, n: number, bits: number, group: number): void {
  const qmax = (1 << (bits - 1)) - 1;
  for (let g0 = 0; g0 < n; g0 += group) {
    const g1 = Math.min(n, g0 + group);
    let amax = 0;
    for (let i = g0; i < g1; i++) amax = Math.max(amax, Math.abs(x[i]));
    const d = amax / qmax;
    for (let i = g0; i < g1; i++) x[i] = d ? Math.round(x[i] / d) * d : 0;
  }
}
const bf16 = (x: Float32Array, from: number, n: number) => {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let i = from; i < from + n; i++) u[i] = ((u[i] + 0x7FFF + ((u[i] >>> 16) & 1)) >>> 16) << 16;
};

function nll(round: ((r: Float32Array) => void) | null): number {
  let sum = 0;
  const s = model.createSession({ contextLength: W });
  for (let st = 0; st < ids.length; st += W - 1) {
    const win = [bos, ...ids.slice(st, st + W - 1)];
    s.reset();
    for (let t = 0; t + 1 < win.length; t++) {
      const logits = s.step(win[t]);
      if (round) for (let l = 0; l < L; l++) round(s.kvCache.rows(l, t, 1));
      // The row just written was used by this step already: recompute it over the rounded rows.
      const again = round ? (s.truncate(t), s.step(win[t])) : logits;
      if (round) for (let l = 0; l < L; l++) round(s.kvCache.rows(l, t, 1));
      let max = -Infinity;
      for (let i = 0; i < V; i++) max = Math.max(max, again[i]);
      let z = 0;
      for (let i = 0; i < V; i++) z += Math.exp(again[i] - max);
      sum += max + Math.log(z) - again[win[t + 1]];
    }
  }
  s.dispose();
  return sum / bytes;
}

const base = nll(null);
console.log(`f32 cache: ${base.toFixed(4)} nats/byte`);
for (const [name, f] of [
  ['bf16 row (c_kv and k^R)', (r: Float32Array) => bf16(r, 0, row)],
  ['int8, one scale per row, k^R f32', (r: Float32Array) => fake(r, dc, 8, dc)],
  ['int8, one scale per row, k^R bf16', (r: Float32Array) => { fake(r, dc, 8, dc); bf16(r, dc, dr); }],
  ['int8, per group of 32, k^R bf16', (r: Float32Array) => { fake(r, dc, 8, 32); bf16(r, dc, dr); }],
  ['int4, one scale per row, k^R f32', (r: Float32Array) => fake(r, dc, 4, dc)],
  ['int4, one scale per row, k^R bf16', (r: Float32Array) => { fake(r, dc, 4, dc); bf16(r, dc, dr); }],
  ['int4, per group of 32, k^R bf16', (r: Float32Array) => { fake(r, dc, 4, 32); bf16(r, dc, dr); }],
  ['int4, per group of 16, k^R bf16', (r: Float32Array) => { fake(r, dc, 4, 16); bf16(r, dc, dr); }],
] as [string, (r: Float32Array) => void][]) {
  const v = nll(f);
  console.log(`${name.padEnd(36)} ${v.toFixed(4)} nats/byte (${v >= base ? '+' : ''}${((v / base - 1) * 100).toFixed(2)}%)`);
}
model.dispose();
