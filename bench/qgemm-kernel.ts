// Kernel-level prefill shape (M 128 = one decoder chunk, K 2048, N 2048), one thread, both builds:
// f32 matmul_nt against qgemm_q8 / qgemm_q4 and the unpacked matmul_nt_q8, 5 interleaved rounds,
// medians, "x f32" from the same run.   node scripts/run-ts.mjs bench/qgemm-kernel.ts
import { loadKernels, type SimdBuild } from '../src/internal.js';
const M = 128, KK = 2048, N = 2048, nb = KK / 32;
for (const b of ['simd', 'relaxed'] as SimdBuild[]) {
  const k = await loadKernels({ simd: b, threads: 1 }); const H = k.heap, K = k.kernels;
  const a = H.alloc(M * KK * 4), w = H.alloc(N * KK * 4), c = H.alloc(M * N * 4);
  const f = H.f32(a, M * KK); for (let i = 0; i < f.length; i++) f[i] = Math.sin(i);
  const g = H.f32(w, N * KK); for (let i = 0; i < g.length; i++) g[i] = Math.cos(i * 1.3);
  const pb = Math.max(K.matmul_pack_bytes(KK, N), K.qgemm_pack_bytes(KK)), pack = H.alloc(pb);
  const wq8 = H.alloc(N * KK), wd = H.alloc(N * nb * 4), wq4 = H.alloc(N * KK / 2), wd4 = H.alloc(N * nb * 4);
  K.quantize_q8_rows(w, KK, N, KK, wq8, wd); K.quantize_q4_rows(w, KK, N, KK, wq4, wd4);
  const aq = H.alloc(M * KK), ad = H.alloc(M * nb * 4);
  for (let i = 0; i < M; i++) K.quantize_q8_act(a + i * KK * 4, KK, aq + i * KK, ad + i * nb * 4);
  const runs: [string, () => void][] = [
    ['f32 matmul_nt', () => K.matmul_nt(a, KK, w, KK, c, N, M, KK, N, pack, false)],
    ['qgemm_q8', () => K.qgemm_q8(aq, ad, wq8, wd, c, N, M, KK, N, pack)],
    ['qgemm_q4', () => K.qgemm_q4(aq, ad, wq4, wd4, c, N, M, KK, N, pack)],
    ['matmul_nt_q8 (old)', () => K.matmul_nt_q8(aq, ad, wq8, wd, c, N, M, KK, N, false)],
  ];
  const t: number[][] = runs.map(() => []);
  for (let r = 0; r < 5; r++) runs.forEach(([, f], i) => { const t0 = performance.now(); f(); t[i].push(performance.now() - t0); });
  const med = (x: number[]) => x.sort((p, q) => p - q)[x.length >> 1];
  const f32ms = med(t[0]);
  runs.forEach(([n], i) => { const ms = med(t[i]); console.log(b, n.padEnd(20), ms.toFixed(1), 'ms', (2 * M * KK * N / ms / 1e6).toFixed(1), 'GFLOP/s', (f32ms / ms).toFixed(2), 'x f32'); });
}
