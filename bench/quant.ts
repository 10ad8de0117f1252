// Narrow-weight matvec micro-benchmark: f32 (matmul.ts's matvec) against bf16, f16, q8 and q4
// (quant.ts) on the same shapes, one thread, both builds, in one process:
//
//   npx esbuild bench/quant.ts --bundle --platform=node --format=esm --outfile=build/bench/quant.mjs
//   node --experimental-wasm-relaxed-simd build/bench/quant.mjs [--rounds 7] [--shapes 2048x2048,…]
//
// (The bundle lives two levels under the package root, as src/host/kernels.ts finds
// ../../build/kernels-*.wasm from itself; scripts/run-ts.mjs bundles one level deep.)
//
// Every kernel of every build runs once per round, in turn, so a burst of someone else's work on
// this shared machine spoils one sample of each, not one kernel; each figure is the median of the
// rounds, each round the median of REPS calls. A call is timed in this process's CPU time, not
// wall time: on a loaded machine a call of a few ms is mostly descheduled midway, and its wall
// time then holds other processes' slices (the 5–8× "slow" f16 / q6k at 5632×2048 of
// bench/results/quant-kquants-2026-12-06.md); the wall/CPU ratio is printed as the sign of it. GB/s counts the weight bytes a call reads (codes
// and scales); "× f32" is the f32 matvec's time over this one's, in the same build and run.
// q8 / q4 / q4k / q5k / q6k time the product alone; quantising the activation (once per token and
// input: Q8_0-style for q8/q4, Q8_K-style for the K-quants) is timed on its own line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadKernels, type LoadedKernels, type SimdBuild } from '../src/internal.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const ROUNDS = Number(arg('rounds', '7'));
const REPS = 5;
const SHAPES = arg('shapes', '2048x2048,2048x10944,10944x2048').split(',').map((s) => s.split('x').map(Number) as [number, number]);
// --against DIR: that directory's kernels-simd.wasm / kernels-relaxed.wasm (another commit's
// build) run in the same rounds as builds "simd-base" / "relaxed-base", for A/B ratios.
const AGAINST = arg('against', '');
const SIMDS: SimdBuild[] = ['simd', 'relaxed'];
const BUILDS = AGAINST ? SIMDS.flatMap((b) => [b, `${b}-base`]) : SIMDS;
const FORMATS = ['f32', 'bf16', 'f16', 'q8', 'q4', 'q4k', 'q5k', 'q6k', 'act', 'actk'] as const;
type Format = typeof FORMATS[number];

interface Case { build: string; fmt: Format; bytes: number; run: () => void; samples: number[]; wall: number[] }

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2147483648 - 1; };
}

/** The matrices of one shape in every format on one build's heap, and a closure per kernel. */
function setup(k: LoadedKernels, build: string, n: number, kk: number): { cases: Case[]; free: () => void } {
  const H = k.heap, K = k.kernels, nb = kk / 32;
  const blocks: [number, number][] = [];
  const alloc = (bytes: number) => { const p = H.alloc(bytes); blocks.push([p, bytes]); return p; };
  const w = alloc(n * kk * 4);
  const wv = H.f32(w, n * kk), r = lcg(n + kk);
  for (let i = 0; i < wv.length; i++) wv[i] = r();
  const wb = alloc(n * kk * 2), wh = alloc(n * kk * 2);
  const b16 = new Uint16Array(H.memory.buffer, wb, n * kk), h16 = new Uint16Array(H.memory.buffer, wh, n * kk);
  const u32 = new Uint32Array(H.memory.buffer, w, n * kk);
  for (let i = 0; i < b16.length; i++) {
    b16[i] = u32[i] >>> 16;
    h16[i] = (u32[i] >>> 16 & 0x8000) | (0x3000 + (u32[i] >>> 13 & 0x0fff)); // finite normals near ±0.1–1
  }
  const q8 = alloc(n * kk), d8 = alloc(n * nb * 4), q4 = alloc(n * kk / 2), d4 = alloc(n * nb * 4);
  K.quantize_q8_rows(w, kk, n, kk, q8, d8);
  K.quantize_q4_rows(w, kk, n, kk, q4, d4);
  // Q4_K / Q5_K / Q6_K rows (k a multiple of 256): random codes, f16 scales near 2^-10 (finite values).
  const kBlocks = kk % 256 ? 0 : n * kk / 256;
  const q4k = kBlocks ? alloc(kBlocks * 144) : 0, q5k = kBlocks ? alloc(kBlocks * 176) : 0, q6k = kBlocks ? alloc(kBlocks * 210) : 0;
  if (kBlocks) {
    const b4 = H.u8(q4k, kBlocks * 144), b5 = H.u8(q5k, kBlocks * 176), b6 = H.u8(q6k, kBlocks * 210);
    for (const b of [b4, b5, b6]) for (let i = 0; i < b.length; i++) b[i] = (r() * 128 + 128) & 255;
    for (let b = 0; b < kBlocks; b++) {
      b4[b * 144 + 1] = 0x18; b4[b * 144 + 3] = 0x18; b5[b * 176 + 1] = 0x18; b5[b * 176 + 3] = 0x18; b6[b * 210 + 209] = 0x18;
    }
  }
  // prep: more than quant_prep_bytes(kk), so that it serves an --against build from before that export too.
  const prep = alloc(16 * kk);
  const x = alloc(kk * 4), y = alloc(n * 4), xq = alloc(kk), xd = alloc(nb * 4), kq = alloc(kk), kr = alloc(Math.max(16, kk / 256 * 36));
  const xv = H.f32(x, kk);
  for (let i = 0; i < kk; i++) xv[i] = r();
  K.quantize_q8_act(x, kk, xq, xd);
  if (kBlocks) K.quantize_q8k_act(x, kk, kq, kr);
  const scales = n * nb * 4;
  const mk = (fmt: Format, bytes: number, run: () => void): Case => ({ build, fmt, bytes, run, samples: [], wall: [] });
  const cases = [
    mk('f32', n * kk * 4, () => K.matvec(w, kk, x, y, n, kk, false)),
    mk('bf16', n * kk * 2, () => K.matvec_bf16(wb, kk, x, y, n, kk, false)),
    mk('f16', n * kk * 2, () => K.matvec_f16(wh, kk, x, y, n, kk, false)),
    mk('q8', n * kk + scales, () => K.matvec_q8(q8, d8, xq, xd, y, n, kk, false, prep)),
    mk('q4', n * kk / 2 + scales, () => K.matvec_q4(q4, d4, xq, xd, y, n, kk, false, prep)),
    ...(kBlocks ? [
      mk('q4k', kBlocks * 144, () => K.matmul_nt_q4k(kq, kr, q4k, y, n, 1, kk, n, false)),
      ...(withQ5k.has(build) ? [mk('q5k', kBlocks * 176, () => K.matmul_nt_q5k(kq, kr, q5k, y, n, 1, kk, n, false))] : []),
      mk('q6k', kBlocks * 210, () => K.matmul_nt_q6k(kq, kr, q6k, y, n, 1, kk, n, false)),
    ] : []),
    mk('act', kk * 4, () => K.quantize_q8_act(x, kk, xq, xd)),
    ...(kBlocks ? [mk('actk', kk * 4, () => K.quantize_q8k_act(x, kk, kq, kr))] : []),
  ];
  return { cases, free: () => { for (const [p, b] of blocks.reverse()) H.release(p, b); } };
}

const median = (a: number[]) => { const s = [...a].sort((p, q) => p - q); return s[s.length >> 1]; };

const kernels = new Map<string, LoadedKernels>();
// An --against build from before Q5_K has no matmul_nt_q5k (the bindings wrap it all the same): its row is left out.
const withQ5k = new Set<string>(SIMDS);
for (const b of SIMDS) {
  kernels.set(b, await loadKernels({ simd: b, threads: 1 }));
  if (!AGAINST) continue;
  const bytes = readFileSync(join(AGAINST, `kernels-${b}.wasm`));
  kernels.set(`${b}-base`, await loadKernels({ wasmBytes: bytes, threads: 1 }));
  if (WebAssembly.Module.exports(new WebAssembly.Module(bytes)).some((e) => e.name === 'matmul_nt_q5k')) withQ5k.add(`${b}-base`);
}
console.log(`node ${process.version}, ${ROUNDS} rounds × ${REPS} calls, medians of CPU time; one thread`);
for (const [n, kk] of SHAPES) {
  const sets = BUILDS.map((b) => setup(kernels.get(b)!, b, n, kk));
  const cases = sets.flatMap((s) => s.cases);
  for (const c of cases) for (let i = 0; i < 10; i++) c.run(); // past Liftoff
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of cases) {
      const t: number[] = [], w: number[] = [];
      for (let i = 0; i < REPS; i++) {
        const c0 = process.cpuUsage(), t0 = performance.now();
        c.run();
        w.push(performance.now() - t0);
        const used = process.cpuUsage(c0);
        t.push((used.user + used.system) / 1000);
      }
      // The µs activation quantisers are seldom descheduled, and cpuUsage's syscall would
      // double their time: wall time for them.
      c.samples.push(median(c.fmt === 'act' || c.fmt === 'actk' ? w : t));
      c.wall.push(median(w));
    }
  }
  console.log(`\nW ${n}×${kk} (n × k): f32 ${(n * kk * 4 / 2 ** 20).toFixed(0)} MiB`);
  console.log(`${'build'.padEnd(AGAINST ? 14 : 9)}format    ms       GB/s    × f32   (K-quants: × q4)`);
  for (const b of BUILDS) {
    const f32ms = median(cases.find((c) => c.build === b && c.fmt === 'f32')!.samples);
    const q4ms = median(cases.find((c) => c.build === b && c.fmt === 'q4')!.samples);
    for (const c of cases.filter((c) => c.build === b)) {
      const ms = median(c.samples);
      const gbs = c.bytes / ms / 1e6;
      const isAct = c.fmt === 'act' || c.fmt === 'actk';
      const note = isAct ? `(${c.fmt === 'act' ? 'quantize_q8_act' : 'quantize_q8k_act'} of x: ${(ms * 1000).toFixed(1)} µs)` : (f32ms / ms).toFixed(2) + (c.fmt === 'q4k' || c.fmt === 'q5k' || c.fmt === 'q6k' ? `   ${(q4ms / ms).toFixed(2)}` : '');
      console.log(`${b.padEnd(AGAINST ? 14 : 9)}${c.fmt.padEnd(10)}${ms.toFixed(3).padStart(7)}  ${isAct ? '     ' : gbs.toFixed(1).padStart(6)}   ${note}`);
    }
  }
  const ratios = cases.map((c) => median(c.wall) / median(c.samples));
  console.log(`wall / CPU time per call: median ${median(ratios).toFixed(2)}, max ${Math.max(...ratios).toFixed(2)} (${cases[ratios.indexOf(Math.max(...ratios))].build} ${cases[ratios.indexOf(Math.max(...ratios))].fmt})`);
  for (const s of sets) s.free();
}
