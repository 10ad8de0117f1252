// Kernel-level batched-decode shape: W [8192, 2048] (64 MiB f32, 32 MiB bf16) times m = 2, 3, 4, 8,
// 16 rows, one thread: gemv_rows_f32 / _bf16 against what the host runs without them (matmul_nt:
// matvec per row below 4 rows, dot tiles above; matmul_nt_bf16; at 2 rows also matvec_bf16 per row), and, with --variant, the same
// gemv_rows of another build of the kernels (e.g. one with a tile body changed), all interleaved,
// 12 rounds; best and median. Last, MLA's per-head W_UV shape at B = 8: gemv_rows_f32 against matmul_nt.
//   node scripts/run-ts.mjs bench/gemv-rows-kernel.ts [--simd relaxed|simd] [--variant other-kernels.wasm]
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { loadKernels, type LoadedKernels, type SimdBuild } from '../src/internal.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const N = 8192, K = 2048, M = 16, ROUNDS = 12;
const variantFile = arg('variant', '');
const load0 = loadavg()[0];
const base = await loadKernels({ simd: arg('simd', 'relaxed') as SimdBuild });
const variant = variantFile ? await loadKernels({ wasmBytes: readFileSync(variantFile) }) : null;

/** W (read as f32 or, its first half, as bf16), X and Y on a kernel instance's heap. */
function place(k: LoadedKernels) {
  const w = k.heap.alloc(N * K * 4), x = k.heap.alloc(M * K * 4), y = k.heap.alloc(M * N * 4);
  k.heap.f32(w, N * K).forEach((_, i, v) => { v[i] = ((i * 7919) % 1999) / 1999 - 0.5; });
  k.heap.f32(x, M * K).forEach((_, i, v) => { v[i] = ((i * 104729) % 997) / 997 - 0.5; });
  return { w, x, y };
}
const B = place(base), V = variant ? place(variant) : null;
const K_ = base.kernels;
const runs: [string, number, () => void][] = [];
for (const m of [2, 3, 4, 8, 16]) {
  runs.push([`f32 m ${m} gemv_rows_f32`, m, () => K_.gemv_rows_f32(B.x, K, B.w, K, B.y, N, m, K, N, false)]);
  if (variant) runs.push([`f32 m ${m} variant`, m, () => variant.kernels.gemv_rows_f32(V!.x, K, V!.w, K, V!.y, N, m, K, N, false)]);
  runs.push([`f32 m ${m} matmul_nt`, m, () => K_.matmul_nt(B.x, K, B.w, K, B.y, N, m, K, N, 0, false)]);
  runs.push([`bf16 m ${m} gemv_rows_bf16`, m, () => K_.gemv_rows_bf16(B.x, K, B.w, K, B.y, N, m, K, N, false)]);
  if (variant) runs.push([`bf16 m ${m} variant`, m, () => variant.kernels.gemv_rows_bf16(V!.x, K, V!.w, K, V!.y, N, m, K, N, false)]);
  runs.push([`bf16 m ${m} matmul_nt_bf16`, m, () => K_.matmul_nt_bf16(B.x, K, B.w, K, B.y, N, m, K, N, false)]);
  if (m === 2) runs.push([`bf16 m 2 matvec_bf16 per row`, m, () => {
    for (let i = 0; i < 2; i++) K_.matvec_bf16(B.w, K, B.x + i * K * 4, B.y + i * N * 4, N, K, false);
  }]);
}
// MLA's per-head W_UV product at B = 8 (bench/decode.ts dims): 16 heads × [8 rows, k 512, n 128], batched by Ops.
const HEADS = 16, DC = 512, DV = 128;
runs.push([`f32 per-head W_UV, ${HEADS} × m 8 × k ${DC} × n ${DV}, gemv_rows_f32`, 8 * HEADS * DV * DC / (N * K), () => {
  for (let h = 0; h < HEADS; h++) K_.gemv_rows_f32(B.x + h * DC * 4, HEADS * DC, B.w + h * DV * DC * 4, DC, B.y + h * DV * 4, HEADS * DV, 8, DC, DV, false);
}]);
runs.push([`f32 per-head W_UV, ${HEADS} × m 8 × k ${DC} × n ${DV}, matmul_nt`, 8 * HEADS * DV * DC / (N * K), () => {
  for (let h = 0; h < HEADS; h++) K_.matmul_nt(B.x + h * DC * 4, HEADS * DC, B.w + h * DV * DC * 4, DC, B.y + h * DV * 4, HEADS * DV, 8, DC, DV, 0, false);
}]);
const times = runs.map(() => [] as number[]);
for (let r = 0; r < ROUNDS + 1; r++) {
  runs.forEach(([, , f], i) => {
    const t = performance.now();
    f();
    if (r > 0) times[i].push(performance.now() - t); // round 0 warms up
  });
}
console.log(`${base.build} build, 1 thread, ${ROUNDS} rounds, 1-minute load average ${load0.toFixed(2)} → ${loadavg()[0].toFixed(2)}\n`);
console.log('| weights, rows, kernel | best ms | median ms | GFLOP/s (best) |\n|---|---|---|---|');
runs.forEach(([name, m], i) => {
  const s = [...times[i]].sort((p, q) => p - q);
  console.log(`| ${name} | ${s[0].toFixed(2)} | ${s[s.length >> 1].toFixed(2)} | ${(2 * m * N * K / s[0] / 1e6).toFixed(1)} |`);
});
