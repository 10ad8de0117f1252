// A/B of kernel code between two builds, compute-bound: the decode kernels on operands that stay
// in L2 (matvec q4 / q8 / f32 / bf16 / f16, Q4_K and Q6_K, attention on f32 and latent int8 / int4 rows,
// SwiGLU, the q4 prefill GEMM), each called in a loop for ~SAMPLE_MS per sample, this build's
// kernels and --against DIR's (kernels-simd.wasm / kernels-relaxed.wasm) taking turns, sample by
// sample, so load on the shared machine hits both alike. Per kernel: the fastest sample's CPU time
// per call in each build, their ratio, and the median of the rounds' ratios (base / this: above
// 1, this build is faster). Another process on the core's SMT sibling slows whole stretches of
// samples; the minimum and the per-round ratio see through most of that.
//
//   node scripts/run-ts.mjs bench/ab-kernels.ts --against DIR [--rounds 40] [--builds simd,relaxed] [--only q6k]
//   then build/ab-kernels.mjs under another runtime (Node 24, Deno: relaxed SIMD is on there).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadKernels, type LoadedKernels, type SimdBuild } from '../src/internal.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const AGAINST = arg('against', '');
if (!AGAINST) throw new Error('--against DIR: the kernels to compare with');
const ROUNDS = Number(arg('rounds', '40'));
const BUILDS = arg('builds', 'simd,relaxed').split(',') as SimdBuild[];
const ONLY = arg('only', ''); // kernels whose name contains this
const SAMPLE_MS = 5, WARM_MS = 300;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2147483648 - 1; };
}

/** The cases on one instance's heap, every operand made from fixed seeds (both builds alike). */
function setup(k: LoadedKernels): [string, () => void][] {
  const H = k.heap, K = k.kernels;
  const f32 = (n: number, seed: number, scale = 1) => {
    const p = H.alloc(n * 4), r = lcg(seed), v = H.f32(p, n);
    for (let i = 0; i < n; i++) v[i] = r() * scale;
    return p;
  };
  const bytes = (n: number, seed: number) => {
    const p = H.alloc(n), r = lcg(seed), v = H.u8(p, n);
    for (let i = 0; i < n; i++) v[i] = (r() * 128 + 128) & 255;
    return p;
  };
  // Matvec: 256 rows of 2048 (q4 256 KiB, f32 2 MiB); Q4_K / Q6_K 128 rows.
  const n = 256, kk = 2048, nb = kk / 32;
  const w = f32(n * kk, 1), x = f32(kk, 2), y = H.alloc(n * 4);
  const q8 = H.alloc(n * kk), d8 = H.alloc(n * nb * 4), q4 = H.alloc(n * kk / 2), d4 = H.alloc(n * nb * 4);
  K.quantize_q8_rows(w, kk, n, kk, q8, d8);
  K.quantize_q4_rows(w, kk, n, kk, q4, d4);
  // prep: more than quant_prep_bytes(kk), so that it serves a base build from before that export too.
  const xq = H.alloc(kk), xd = H.alloc(nb * 4), prep = H.alloc(16 * kk);
  K.quantize_q8_act(x, kk, xq, xd);
  const wh = H.alloc(n * kk * 2), h16 = new Uint16Array(H.memory.buffer, wh, n * kk), u32 = new Uint32Array(H.memory.buffer, w, n * kk);
  for (let i = 0; i < h16.length; i++) h16[i] = (u32[i] >>> 16 & 0x8000) | (0x3000 + (u32[i] >>> 13 & 0x0fff));
  const nk = 128, kBlocks = nk * kk / 256;
  const q4k = bytes(kBlocks * 144, 3), q6k = bytes(kBlocks * 210, 4);
  const b4 = H.u8(q4k, kBlocks * 144), b6 = H.u8(q6k, kBlocks * 210);
  for (let b = 0; b < kBlocks; b++) { b4[b * 144 + 1] = 0x18; b4[b * 144 + 3] = 0x18; b6[b * 210 + 209] = 0x18; }
  const kq = H.alloc(kk), kr = H.alloc(kk / 256 * 36);
  K.quantize_q8k_act(x, kk, kq, kr);
  // Attention: 16 heads × 256 keys of MLA's d_c 512 + d_r 64 (f32 rows 576 KiB).
  const nq = 16, keys = 256, dc = 512, dr = 64, lat = dc + dr, scale = 1 / Math.sqrt(lat);
  const rows = f32(keys * lat, 5, 0.5), queries = f32(nq * lat, 6, 0.3);
  const m = H.alloc(nq * 4), l = H.alloc(nq * 4), acc = H.alloc(nq * dc * 4), scratch = H.alloc(K.attn_scratch_bytes(nq));
  const latent = (fmt: number): () => void => {
    const R = K.latent_row_bytes(fmt, dc, dr), Q = K.latent_query_bytes(fmt, dc, dr);
    const narrow = H.alloc(keys * R), records = H.alloc(nq * Q);
    K.latent_store(fmt, rows, lat, keys, dc, dr, narrow, R);
    // bf16 rows take the f32 queries as they are; int8 and int4 take quantised records.
    if (fmt === 1) H.f32(records, nq * lat).set(H.f32(queries, nq * lat));
    else K.latent_query(queries, lat, nq, dc, dr, records, Q);
    return () => { K.attn_init(m, l, acc, nq, dc, dc); K.attn_block_latent(fmt, records, Q / 4, nq, keys, nq, dc, dr, narrow, R / 4, keys, 0, scale, m, l, acc, dc, scratch); };
  };
  // SwiGLU over one token of a 10944-wide FFN; the q4 GEMM at M 16, K 2048, N 64.
  const ffn = 10944, gu = f32(2 * ffn, 7, 8), act = H.alloc(ffn * 4);
  const M = 16, N = 64, aq = H.alloc(M * kk), ad = H.alloc(M * nb * 4), c = H.alloc(M * N * 4), pack = H.alloc(K.qgemm_pack_bytes(kk));
  for (let i = 0; i < M; i++) K.quantize_q8_act(w + i * kk * 4, kk, aq + i * kk, ad + i * nb * 4);
  return [
    ['matvec f32 (unchanged)', () => K.matvec(w, kk, x, y, n, kk, false)],
    ['matvec q8', () => K.matvec_q8(q8, d8, xq, xd, y, n, kk, false, prep)],
    ['matvec q4', () => K.matvec_q4(q4, d4, xq, xd, y, n, kk, false, prep)],
    ['matvec bf16', () => K.matvec_bf16(wh, kk, x, y, n, kk, false)],
    ['matvec f16', () => K.matvec_f16(wh, kk, x, y, n, kk, false)],
    ['q4k (matmul_nt m 1)', () => K.matmul_nt_q4k(kq, kr, q4k, y, nk, 1, kk, nk, false)],
    ['q6k (matmul_nt m 1)', () => K.matmul_nt_q6k(kq, kr, q6k, y, nk, 1, kk, nk, false)],
    ['attn_block f32', () => { K.attn_init(m, l, acc, nq, dc, dc); K.attn_block(queries, lat, nq, keys, nq, dc, dr, rows, lat, rows + dc * 4, lat, rows, lat, dc, keys, 0, scale, m, l, acc, dc, scratch); }],
    ['attn_block_latent bf16', latent(1)],
    ['attn_block_latent int8', latent(2)],
    ['attn_block_latent int4', latent(3)],
    ['swiglu', () => K.swiglu(gu, 2 * ffn, act, ffn, 1, ffn)],
    ['qgemm_q4', () => K.qgemm_q4(aq, ad, q4, d4, c, N, M, kk, N, pack)],
  ];
}

const median = (a: number[]) => { const s = [...a].sort((p, q) => p - q); return s[s.length >> 1]; };
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

/** Calls per sample: enough for SAMPLE_MS, after WARM_MS of calls (past Liftoff: a large function's optimised code may take a while). */
function calls(run: () => void): number {
  for (const t0 = performance.now(); performance.now() - t0 < WARM_MS;) run();
  let reps = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) run();
    const ms = performance.now() - t0;
    if (ms > SAMPLE_MS / 4) return Math.max(1, Math.round(reps * SAMPLE_MS / ms));
    reps *= 4;
  }
}

console.log(`${typeof (globalThis as { Deno?: unknown }).Deno === 'object' ? 'deno' : 'node'} ${process.version}, ${ROUNDS} rounds of ${SAMPLE_MS} ms, CPU ms per call; base = ${AGAINST}`);
console.log('| build | kernel | base ms (min) | this ms (min) | base / this (min) | base / this (median of rounds) |');
console.log('|---|---|---|---|---|---|');
for (const b of BUILDS) {
  const mine = setup(await loadKernels({ simd: b, threads: 1 }));
  const base = setup(await loadKernels({ wasmBytes: readFileSync(join(AGAINST, `kernels-${b}.wasm`)), threads: 1 }));
  for (let c = 0; c < mine.length; c++) {
    if (!mine[c][0].includes(ONLY)) continue;
    const reps = calls(mine[c][1]);
    calls(base[c][1]);
    const t: number[][] = [[], []];
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which goes first.
      const order = r & 1 ? [1, 0] : [0, 1];
      for (const side of order) {
        const run = (side ? base : mine)[c][1];
        const t0 = cpuMs();
        for (let i = 0; i < reps; i++) run();
        t[side].push((cpuMs() - t0) / reps);
      }
    }
    const [ms, bs] = [Math.min(...t[0]), Math.min(...t[1])];
    const ratio = median(t[1].map((v, i) => v / t[0][i]));
    console.log(`| ${b} | ${mine[c][0]} | ${bs.toFixed(4)} | ${ms.toFixed(4)} | ${(bs / ms).toFixed(2)} | ${ratio.toFixed(2)} |`);
  }
}
