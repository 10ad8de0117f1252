// Kernel benchmark: matmul / matvec / decode attention throughput as ratios to probes of this machine taken in the
// same run (compute peak of the same build, DRAM read bandwidth), since absolute figures move
// 20% between runs on a shared machine.
//
//   npx esbuild bench/kernels.ts --bundle --platform=node --format=esm --outfile=build/bench-kernels.mjs
//   node --experimental-wasm-relaxed-simd build/bench-kernels.mjs [simd|relaxed]… [--quick]
//
// (The bundle must live in build/ so that src/wasm.ts finds ../build/kernels-*.wasm.)
import { loadKernels, panelWidth, type LoadedKernels, type SimdBuild } from '../src/internal.js';

export interface KernelBenchRow {
  kernel: string;
  shape: string;
  /** best time of one call, milliseconds */
  ms: number;
  gflops?: number;
  gbs?: number;
  /** gflops / peakGflops for compute-bound kernels, gbs / dramGBs for bandwidth-bound ones */
  ratio: number;
  note?: string;
}

export interface KernelBenchResult {
  build: SimdBuild;
  peakGflops: number;
  peakChains: number;
  /** GB/s: the better of the two read probes, or the fastest GEMV from DRAM if it reads more */
  dramGBs: number;
  /** GB/s: probe_read (one stream) and probe_read_pairs (two streams 2 MiB apart) */
  dramOneStreamGBs: number;
  dramPairsGBs: number;
  rows: KernelBenchRow[];
}

/** Seconds-scale: best of `reps` timed calls after `warm` untimed ones (V8 tiers up from Liftoff on a later call). */
function best(fn: () => void, warm: number, reps: number): number {
  for (let i = 0; i < warm; i++) fn();
  let t = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    t = Math.min(t, performance.now() - t0);
  }
  return t;
}

/** A block of `len` floats filled with values in [-1, 1) (written, so no page is the shared zero page). */
function filled(k: LoadedKernels, len: number, seed: number): number {
  const ptr = k.heap.alloc(len * 4);
  const v = k.heap.f32(ptr, len);
  let s = seed >>> 0;
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2147483648 - 1;
  }
  return ptr;
}

interface Case {
  kernel: string;
  shape: string;
  /** bytes read (bandwidth-bound) or flops (compute-bound) per call */
  bytes?: number;
  /** bandwidth-bound and read from DRAM (not a cache): it counts toward the DRAM figure */
  fromDram?: boolean;
  flops?: number;
  note?: string;
  run: () => void;
}

/**
 * Probes and kernels are measured in `rounds` interleaved rounds (each a best of several calls),
 * and each keeps its best round: on a shared machine a burst of someone else's work then spoils
 * one round of a measurement, not the measurement.
 */
export async function benchKernels(opts: { build: SimdBuild; quick?: boolean }): Promise<KernelBenchResult> {
  const quick = opts.quick ?? false;
  const rounds = quick ? 1 : 4;
  const k = await loadKernels({ simd: opts.build });
  const K = k.kernels;
  const heap = k.heap;

  // Buffers: a 256 MiB block for the DRAM probe, whose first 64 MiB also hold W for the GEMVs
  // and A, B for the GEMMs (their contents do not matter, only that every page was written).
  const big = filled(k, (256 << 20) / 4, 7);
  const maxM = 512, maxK = 2048, maxN = 2048;
  const a = big + (64 << 20), b = a + maxM * maxK * 4;
  const c = heap.alloc(maxM * maxN * 4);
  const packBytes = K.matmul_pack_bytes(maxK, maxN);
  const pack = heap.alloc(packBytes);
  const w = big;
  const vecBlock = filled(k, 16384 + 2048, 4); // the vector (up to 16384 floats), placed within
  const y = heap.alloc(16384 * 4 + 4096);
  // An address in [base, base + 4 KiB) whose offset within 4 KiB is W's plus `off`.
  const at = (base: number, off: number) => base + ((w + off - base) & 4095);

  const chains = K.probe_peak_chains();
  const peakIters = quick ? 5_000_000 : 10_000_000;
  const probes: Case[] = [
    { kernel: 'probe_peak', shape: `${chains} chains`, flops: peakIters * chains * 4 * 2, run: () => K.probe_peak(peakIters) },
    { kernel: 'probe_read', shape: '256 MiB', bytes: 256 << 20, run: () => K.probe_read(big, 256 << 20, 1) },
    // Two streams 2 MiB apart read faster than one here (matmul.ts PAIR_BYTES): the DRAM figure is the better of the two.
    { kernel: 'probe_read_pairs', shape: '256 MiB', bytes: 256 << 20, run: () => K.probe_read_pairs(big, 256 << 20, 1) },
  ];
  const cases: Case[] = [];
  // GEMM: C[m, n] = A[m, k] · B[n, k]ᵀ (and B[k, n] for NN) at prefill shapes.
  for (const [kernel, m, kk, n] of [
    ['matmul_nt', 64, 512, 512],
    ['matmul_nt', 128, 2048, 2048],
    ['matmul_nt', 512, 2048, 2048],
    ['matmul_nn', 128, 2048, 2048],
  ] as [string, number, number, number][]) {
    if (quick && m > 128) continue;
    const f = kernel === 'matmul_nt' ? K.matmul_nt : K.matmul_nn;
    const ldb = kernel === 'matmul_nt' ? kk : n;
    cases.push({ kernel, shape: `${m}×${kk}×${n}`, flops: 2 * m * kk * n, run: () => f(a, kk, b, ldb, c, n, m, kk, n, pack, false) });
  }
  // GEMV: one pass over the weights; the bound is DRAM bandwidth. Calls rotate W through the
  // four 64 MiB quarters of the 256 MiB block, so no call finds its W in a (≤ 192 MiB) cache.
  // The vector sits 2 KiB away from W's offset within 4 KiB (as a host should place it: at the
  // same offset the two compete for L1 sets); one row measures that unlucky placement.
  let turn = 0;
  const nextW = () => w + ((turn++ & 3) << 26);
  for (const [kernel, rowsN, cols, off, note] of [
    ['matvec', 4096, 4096, 2048],  // 64 MiB of weights: beyond the caches
    ['matvec', 4096, 4096, 0, 'x at the same offset within 4 KiB as W'],
    ['matvec', 1024, 16384, 2048], // k beyond VEC_L1: four rows at a time
    ['matvec', 2048, 2048, 2048, '16 MiB, the same each call: may sit in L3'],
    ['vecmat', 4096, 4096, 2048],
  ] as [string, number, number, number, string?][]) {
    const v = at(vecBlock, off), out = at(y, off);
    const rotate = rowsN * cols * 4 >= 64 << 20;
    // matvec: W is [n, k] = [rowsN, cols]; vecmat: W is [k, n] = [rowsN, cols].
    const run = kernel === 'matvec'
      ? () => K.matvec(rotate ? nextW() : w, cols, v, y, rowsN, cols, false)
      : () => K.vecmat(vecBlock, rotate ? nextW() : w, cols, out, rowsN, cols, false);
    const shape = kernel === 'matvec' ? `1×${cols}×${rowsN}` : `1×${rowsN}×${cols}`;
    cases.push({ kernel, shape, bytes: rowsN * cols * 4, fromDram: rotate, note, run });
  }
  // The decoder stores matrices wider than PANEL_COLS in column panels and sums their matvecs
  // (src/weights.ts Matrix): the same shapes as it reads them.
  for (const [rowsN, cols] of [[4096, 4096], [1024, 16384]]) {
    const width = panelWidth(cols), v = at(vecBlock, 2048);
    const run = () => {
      const wp = nextW();
      for (let k0 = 0; k0 < cols; k0 += width) {
        const kp = Math.min(width, cols - k0);
        K.matvec(wp + rowsN * k0 * 4, kp, v + k0 * 4, y, rowsN, kp, k0 > 0);
      }
    };
    cases.push({ kernel: 'matvec', shape: `1×${cols}×${rowsN}`, bytes: rowsN * cols * 4, fromDram: true, note: `${Math.ceil(cols / width)} column panels (the decoder's layout)`, run });
  }

  // Absorbed MLA decode attention (V2-Lite dims): 16 heads' queries [d_c 512 | d_r 64] over S
  // latent cache rows [c_kv | k^R] (the values are c_kv): 16·S·(576 + 512) multiply-adds. The
  // rows rotate through the quarters of the 256 MiB block like W above: a decode step finds its
  // cache in DRAM, the weights having streamed through the caches since the last step.
  const H = 16, dc = 512, dr = 64, lat = dc + dr;
  const qAbs = filled(k, H * lat, 5);
  const attnState = heap.alloc((2 * H + H * dc) * 4), attnScratch = heap.alloc(K.attn_scratch_bytes(H));
  const mS = attnState, lS = mS + H * 4, accS = lS + H * 4;
  const attention = (rows: number, S: number) => {
    K.attn_init(mS, lS, accS, H, dc, dc);
    K.attn_block(qAbs, lat, H, S - 1, H, dc, dr, rows, lat, rows + dc * 4, lat, rows, lat, dc, S, 0, 1 / Math.sqrt(192), mS, lS, accS, dc, attnScratch);
    K.attn_finish(lS, accS, dc, H, dc, accS, dc);
  };
  for (const S of quick ? [4096] : [4096, 16384]) {
    cases.push({ kernel: 'attention', shape: `16 heads × ${S}`, flops: 2 * H * S * (lat + dc), note: 'absorbed MLA decode', run: () => attention(nextW(), S) });
  }

  // Warm-up: V8 runs Liftoff code until a function has been called enough to tier up, and then
  // until its optimised code, compiled in the background, is ready; so warm up for a while.
  const warmUntil = performance.now() + (quick ? 250 : 500);
  while (performance.now() < warmUntil) {
    K.probe_peak(100_000);
    K.probe_read(big, 1 << 16, 10);
    K.probe_read_pairs(big, 4 << 20, 1);
    K.matmul_nt(a, 64, b, 64, c, 64, 64, 64, 64, pack, false);
    K.matmul_nn(a, 64, b, 64, c, 64, 64, 64, 64, pack, false);
    K.matvec(w, 64, vecBlock, y, 64, 64, false);
    K.matvec(w, 8192, vecBlock, y, 4, 8192, false);
    K.vecmat(vecBlock, w, 64, y, 64, 64, false);
    attention(w, 64);
  }

  const bestMs = new Map<Case, number>();
  const measure = (cs: Case, work: number) => {
    // about 0.3 s of calls (at least 3) after one untimed call
    const reps = quick ? 3 : Math.max(3, Math.min(30, Math.round(300 / work)));
    const t = best(cs.run, 1, reps);
    bestMs.set(cs, Math.min(bestMs.get(cs) ?? Infinity, t));
  };
  for (let r = 0; r < rounds; r++) {
    for (const cs of [...probes, ...cases]) {
      // a rough time per call from the work: 50 GFLOP/s or 30 GB/s, in ms
      measure(cs, cs.flops ? cs.flops / 5e7 : cs.bytes! / 3e7);
    }
  }
  const peakGflops = probes[0].flops! / bestMs.get(probes[0])! / 1e6;
  const dramOneStreamGBs = probes[1].bytes! / bestMs.get(probes[1])! / 1e6;
  const dramPairsGBs = probes[2].bytes! / bestMs.get(probes[2])! / 1e6;
  // A probe that a kernel reading from DRAM beats is no bound: the DRAM figure is the highest of both.
  const dramGBs = Math.max(dramOneStreamGBs, dramPairsGBs,
    ...cases.filter((cs) => cs.fromDram).map((cs) => cs.bytes! / bestMs.get(cs)! / 1e6));
  const rows: KernelBenchRow[] = cases.map((cs) => {
    const ms = bestMs.get(cs)!;
    if (cs.flops) {
      const gflops = cs.flops / ms / 1e6;
      return { kernel: cs.kernel, shape: cs.shape, ms, gflops, ratio: gflops / peakGflops, ...(cs.note ? { note: cs.note } : {}) };
    }
    const gbs = cs.bytes! / ms / 1e6;
    return { kernel: cs.kernel, shape: cs.shape, ms, gbs, ratio: gbs / dramGBs, ...(cs.note ? { note: cs.note } : {}) };
  });

  heap.release(attnScratch, K.attn_scratch_bytes(H));
  heap.release(attnState, (2 * H + H * dc) * 4);
  heap.release(qAbs, H * lat * 4);
  heap.release(y, 16384 * 4 + 4096);
  heap.release(vecBlock, (16384 + 2048) * 4);
  heap.release(pack, packBytes);
  heap.release(c, maxM * maxN * 4);
  heap.release(big, 256 << 20);
  return { build: k.build, peakGflops, peakChains: chains, dramGBs, dramOneStreamGBs, dramPairsGBs, rows };
}

// Run directly (the bundle in build/): benchmark the builds named on the command line.
const argv: string[] = (globalThis as any).process?.argv ?? [];
if (argv[1] && /bench-kernels\.m?js$/.test(argv[1])) {
  const builds = argv.slice(2).filter((s) => s === 'simd' || s === 'relaxed') as SimdBuild[];
  const quick = argv.includes('--quick');
  for (const build of builds.length ? builds : (['simd', 'relaxed'] as SimdBuild[])) {
    const t0 = performance.now();
    const r = await benchKernels({ build, quick });
    console.log(`${r.build}: peak ${r.peakGflops.toFixed(1)} GFLOP/s (${r.peakChains} chains), DRAM ${r.dramGBs.toFixed(1)} GB/s (one stream ${r.dramOneStreamGBs.toFixed(1)}, two ${r.dramPairsGBs.toFixed(1)})` +
      `  [${((performance.now() - t0) / 1000).toFixed(1)} s]`);
    for (const row of r.rows) {
      const what = row.gbs !== undefined ? `${row.gbs.toFixed(1)} GB/s` : `${row.gflops!.toFixed(1)} GFLOP/s`;
      console.log(`  ${row.kernel.padEnd(10)} ${row.shape.padEnd(16)} ${row.ms.toFixed(2).padStart(8)} ms  ${what.padStart(14)}  ratio ${row.ratio.toFixed(2)}${row.note ? `  (${row.note})` : ''}`);
    }
    console.log(JSON.stringify(r));
  }
}
