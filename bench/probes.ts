// Same-run probes of this machine beyond those in bench/kernels.ts: DRAM read bandwidth of one
// process on its own (for stages run long after the kernel bench) and of two processes reading at
// once (the bound of a 2-thread decode). Each reads in both patterns the kernels' probes have,
// one stream and two streams 2 MiB apart, and keeps the better. And the rate at which each
// weights format's decode GEMV computes when DRAM is out of the way (probeDecodeRates).
import { spawn } from 'node:child_process';
import { loadKernels, matrixBytes, Ops, type Kernels, type SimdBuild } from '../src/internal.js';

const BYTES = 256 << 20;

async function readBuffer(build: SimdBuild) {
  const { kernels: K, heap } = await loadKernels({ simd: build });
  const ptr = heap.alloc(BYTES);
  const v = heap.f32(ptr, BYTES / 4);
  for (let i = 0; i < v.length; i += 1024) v[i] = i; // touch every page
  return { K, ptr };
}

/** One 256 MiB pass of either read pattern (one stream, or two 2 MiB apart), GB/s. */
function readPass(K: Kernels, ptr: number, pairs: boolean): number {
  const t = performance.now();
  if (pairs) K.probe_read_pairs(ptr, BYTES, 1);
  else K.probe_read(ptr, BYTES, 1);
  return BYTES / (performance.now() - t) / 1e6;
}

/** One process: the best of `passes` reads of 256 MiB in each pattern, GB/s. */
export async function probeDram(build: SimdBuild, passes = 8): Promise<number> {
  const { K, ptr } = await readBuffer(build);
  for (let i = 0; i < 3; i++) { K.probe_read(ptr, 1 << 16, 10); K.probe_read_pairs(ptr, 4 << 20, 1); }
  readPass(K, ptr, false); readPass(K, ptr, true);
  let best = 0;
  for (let i = 0; i < passes; i++) best = Math.max(best, readPass(K, ptr, false), readPass(K, ptr, true));
  return best;
}

/** A read probe inside this process: a read of 256 MiB on this many threads. */
export interface InProcessReader {
  /** The better of one pass in each pattern, GB/s. */
  read(): number;
  dispose(): void;
}

/**
 * A read probe on `threads` threads in this process (its own kernels, pool and 256 MiB), for
 * probing right beside the work it is the floor of, in the same process.
 */
export async function inProcessReader(build: SimdBuild, threads: number): Promise<InProcessReader> {
  const { kernels: K, heap, pool } = await loadKernels({ simd: build, threads });
  const ptr = heap.alloc(BYTES);
  const v = heap.f32(ptr, BYTES / 4);
  for (let i = 0; i < v.length; i += 1024) v[i] = i;
  const ops = new Ops(K, pool, 0, 0);
  const pass = (pairs: boolean) => {
    const t = performance.now();
    const bytes = ops.read(ptr, BYTES, pairs);
    return bytes / (performance.now() - t) / 1e6;
  };
  for (let i = 0; i < 2; i++) { pass(false); pass(true); }
  return { read: () => Math.max(pass(false), pass(true)), dispose: () => pool?.dispose() };
}

export interface ReadWorkerSpec { build: SimdBuild; startAt: number; durationMs: number }

/**
 * Child side of the 2-process probe: from `startAt` (epoch ms) read 256 MiB passes for
 * `durationMs`, alternating the two patterns; the median GB/s of the better pattern.
 */
export async function readWorker(spec: ReadWorkerSpec): Promise<{ gbs: number; passes: number }> {
  const { K, ptr } = await readBuffer(spec.build);
  while (Date.now() < spec.startAt) { K.probe_read(ptr, 1 << 16, 10); K.probe_read_pairs(ptr, 4 << 20, 1); }
  const rates: [number[], number[]] = [[], []];
  for (let i = 0; Date.now() < spec.startAt + spec.durationMs; i++) rates[i & 1].push(readPass(K, ptr, (i & 1) === 1));
  const median = (r: number[]) => r.length ? [...r].sort((a, b) => a - b)[Math.floor(r.length / 2)] : 0;
  return { gbs: Math.max(median(rates[0]), median(rates[1])), passes: rates[0].length + rates[1].length };
}

/** This runtime running `bundle` (with relaxed SIMD enabled under Node 20). */
export function selfCommand(bundle: string): string[] {
  const g = globalThis as any;
  if (g.Deno) return [g.Deno.execPath(), 'run', '-A', bundle];
  if (g.process?.versions?.bun) return [process.execPath, bundle];
  return [process.execPath, '--experimental-wasm-relaxed-simd', bundle];
}

/** Two processes reading their own 256 MiB at the same time: the sum of their median rates, GB/s. */
export async function probeDramTwoProcesses(bundle: string, build: SimdBuild): Promise<number | null> {
  const spec: ReadWorkerSpec = { build, startAt: Date.now() + 2000, durationMs: 2000 };
  const [cmd, ...pre] = selfCommand(bundle);
  const one = () => new Promise<number | null>((resolve) => {
    const child = spawn(cmd, [...pre, '--read-worker', JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', () => {
      const line = out.split('\n').find((l) => l.startsWith('{"gbs"'));
      resolve(line ? JSON.parse(line).gbs : null);
    });
    child.on('error', () => resolve(null));
  });
  const [a, b] = await Promise.all([one(), one()]);
  return a !== null && b !== null ? a + b : null;
}

/** The compute peak of a build: best of `rounds` probe_peak runs, GFLOP/s. */
export async function probePeak(build: SimdBuild, rounds = 5): Promise<number> {
  const { kernels: K } = await loadKernels({ simd: build });
  const chains = K.probe_peak_chains();
  const warmUntil = performance.now() + 300;
  while (performance.now() < warmUntil) K.probe_peak(100_000);
  const iters = 10_000_000;
  let best = Infinity;
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    K.probe_peak(iters);
    best = Math.min(best, performance.now() - t);
  }
  return (iters * chains * 4 * 2) / best / 1e6;
}

/** probe_matvec's code for each weights format. */
const MATVEC_CODES = { bf16: 0, f16: 1, q8: 2, q4: 3, f32: 4 } as const;
export type DecodeFormat = keyof typeof MATVEC_CODES;

/**
 * The compute side of a decode GEMV, per weights format: GB/s of weights (codes and scales) one
 * core decodes when they come from L1 (probe_matvec: the matvec pair loop on one pair of rows of
 * 2048). The best of many short timings (about 2 ms each, formats taken in turn): on a shared
 * machine a short one is likelier to run undisturbed, and a ceiling wants the undisturbed figure.
 * A decode step's compute floor is each format's bytes / its rate.
 */
export async function probeDecodeRates(build: SimdBuild, rounds = 40): Promise<Record<DecodeFormat, number>> {
  const { kernels: K, heap } = await loadKernels({ simd: build });
  const n = 2, k = 2048;
  let seed = 7;
  const random = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 31 - 1;
  const x = heap.alloc(k * 4), xq = heap.alloc(k), xs = heap.alloc(k / 8), y = heap.alloc(n * 4);
  const prep = heap.alloc(Math.max(16, K.quant_prep_bytes(k)));
  heap.f32(x, k).forEach((_, i, v) => { v[i] = random(); });
  K.quantize_q8_act(x, k, xq, xs);
  const wf = heap.alloc(n * k * 4);
  const values = heap.f32(wf, n * k);
  values.forEach((_, i, v) => { v[i] = random() * 0.05; });
  const out: Partial<Record<DecodeFormat, number>> = {};
  const formats = Object.keys(MATVEC_CODES) as DecodeFormat[];
  const runs = formats.map((format) => {
    // Weights as the loader keeps them (normal numbers only: a subnormal would time the FPU's slow
    // path), each format in its own buffer so that the formats can take turns.
    const w = heap.alloc(n * k * 2), s = heap.alloc(n * k / 8);
    let ptr = w, vx = x;
    if (format === 'f32') ptr = wf;
    else if (format === 'bf16') new Uint16Array(heap.memory.buffer, w, n * k).forEach((_, i, v) => { v[i] = new Uint32Array(values.buffer, values.byteOffset + i * 4, 1)[0] >>> 16; });
    else if (format === 'f16') new Uint16Array(heap.memory.buffer, w, n * k).forEach((_, i, v) => { v[i] = (random() < 0 ? 0x8000 : 0) | ((10 + (i % 5)) << 10) | ((i * 97) & 0x3ff); });
    else if (format === 'q8') K.quantize_q8_rows(wf, k, n, k, w, s);
    else K.quantize_q4_rows(wf, k, n, k, w, s);
    if (format === 'q8' || format === 'q4') vx = xq;
    const run = (reps: number) => K.probe_matvec(MATVEC_CODES[format], ptr, s, vx, xs, y, n, k, reps, prep);
    let reps = 16;
    for (const until = performance.now() + 100; performance.now() < until;) run(reps);
    for (;; reps *= 2) { const t0 = performance.now(); run(reps); if (performance.now() - t0 > 2) break; }
    return { format, run, reps, bytes: matrixBytes(format, n, k), best: Infinity };
  });
  for (let i = 0; i < rounds; i++) {
    for (const r of runs) {
      const t0 = performance.now();
      r.run(r.reps);
      r.best = Math.min(r.best, (performance.now() - t0) / r.reps);
    }
  }
  for (const r of runs) out[r.format] = r.bytes / r.best / 1e6;
  return out as Record<DecodeFormat, number>;
}
