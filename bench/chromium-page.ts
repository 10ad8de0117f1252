// The page side of `npm run bench -- --runtime chromium`: bundled into build/bench-chromium.mjs and
// loaded by bench/chromium.html in headless Chromium, cross-origin isolated so the kernels' worker
// pool can run. It measures what the Node run measures in-process (kernels against their probes,
// the llama-bench rows, the decode variants) with the same functions, and leaves the figures in
// `window.benchDone` for bench/chromium.ts, which writes the results from Node.
import { chooseBuild, threadsAvailable, type SimdBuild } from '../src/internal.js';
import { benchDecode } from './decode.js';
import { benchKernels, type KernelBenchResult } from './kernels.js';
import { benchLlama } from './llama.js';
import { probeDram, probePeak } from './probes.js';

export interface ChromiumPageResult {
  userAgent: string;
  cores: number;
  crossOriginIsolated: boolean;
  build: SimdBuild;
  threadCounts: number[];
  probes: { peakGflops: number; dramGBs: number };
  kernels: KernelBenchResult[];
  llama: Awaited<ReturnType<typeof benchLlama>>;
  decode: Awaited<ReturnType<typeof benchDecode>>;
}

const params = new URLSearchParams(location.search);
const quick = params.has('quick');
const sections = new Set((params.get('sections') ?? 'kernels,llama,decode').split(','));
const contexts = (params.get('contexts') ?? '').split(',').filter(Boolean).map(Number);
const log = (s: string) => console.log(s);

async function run(): Promise<ChromiumPageResult> {
  const best = chooseBuild('auto');
  const builds = (['simd', 'relaxed'] as SimdBuild[]).filter((b) => b === 'simd' || best === 'relaxed');
  const kernels: KernelBenchResult[] = [];
  if (sections.has('kernels')) {
    for (const build of builds) {
      log(`kernels, ${build} build:`);
      kernels.push(await benchKernels({ build, quick }));
    }
  }
  // The floors' probes as in bench/run.ts: the highest peak (a probe, or a GEMM of the build in use) and read.
  const peaks = kernels.flatMap((k) => [k.peakGflops, ...(k.build === best ? k.rows.flatMap((r) => (r.gflops ? [r.gflops] : [])) : [])]);
  const drams = kernels.map((k) => k.dramGBs);
  if (!kernels.length) { peaks.push(await probePeak(best)); drams.push(await probeDram(best)); }
  const probes = { peakGflops: Math.max(...peaks), dramGBs: Math.max(...drams) };
  const cores = navigator.hardwareConcurrency ?? 1;
  const threadCounts = cores >= 2 && threadsAvailable() ? [1, 2] : [1];
  const llama = sections.has('llama') ? await benchLlama(best, { ...probes, dramGBs2: null }, threadCounts, quick, log) : [];
  const decode = sections.has('decode') ? await benchDecode(best, contexts, log) : [];
  return { userAgent: navigator.userAgent, cores, crossOriginIsolated, build: best, threadCounts, probes, kernels, llama, decode };
}

(globalThis as unknown as { benchDone: Promise<ChromiumPageResult | { error: string }> }).benchDone =
  run().catch((e: Error) => ({ error: e.stack ?? String(e) }));
