// npm run bench [-- --quick] [-- --e2e] [-- --runtime node|deno|bun|all] [-- --only kernels,llama,decode,peers,e2e]
//   [-- --weights f32,bf16,int8,int4] [-- --cache f32|bf16|int8|int4] [-- --builds simd,relaxed]  (the e2e rows of ours)
//   [-- --peer-graphs f32,nbits4,nbits8,mmi8]  (the ONNX graphs the e2e peers run; default: one per weights format)
//
// One run measures, side by side: same-run probes of this machine (compute peak, DRAM read
// bandwidth of one and of two processes); our kernels against them; llama-bench style prefill and
// decode rows of the default model and of a V2-Lite-dims model against their roofline floors; MLA
// (absorbed, naive) vs MHA/GQA-4/MQA decode at growing context (table and SVG plot); the peers
// (onnxruntime-web, tfjs-backend-wasm, onnxruntime-node) on the same matmul/matvec shapes; and with
// --e2e, one decode step of a V2-Lite-dims checkpoint against the same step as an ONNX graph under
// onnxruntime-web and onnxruntime-node. Writes bench/results/latest.json and latest.md (under Deno
// or Bun: latest-deno.*, latest-bun.*) and, from the decode rows, bench/results/decode.svg.
//
// The same bundle is also the child process of the peer and probe stages (--peer-worker,
// --e2e-worker, --read-worker), so every peer is measured in a fresh process.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { CACHE_FORMATS, chooseBuild, threadsAvailable, type CacheFormat, type SimdBuild } from '../src/internal.js';
import { benchInChromium } from './chromium.js';
import { benchDecode, type DecodeRow } from './decode.js';
import { benchE2e, type E2eResult, type E2eWeights } from './e2e/runner.js';
import { e2eWorker } from './e2e/worker.js';
import { NARROW_TOL, STEP_GRAPHS, type StepGraph } from './e2e/onnx-step.js';
import { benchKernels, type KernelBenchResult } from './kernels.js';
import { benchLlama, type LlamaRow } from './llama.js';
import { benchPeers, peerWorker, SHAPES, type PeerResult } from './peers.js';
import { decodePlot } from './plot.js';
import { probeDecodeRates, probeDram, probeDramTwoProcesses, probePeak, readWorker, type DecodeFormat } from './probes.js';

const argv: string[] = (globalThis as any).process?.argv ?? [];
const arg = (name: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };
const bundle = fileURLToPath(import.meta.url);

// --- child process modes -------------------------------------------------------------------------
const workerMode = ['--peer-worker', '--e2e-worker', '--read-worker'].find((m) => argv.includes(m));
if (workerMode) {
  const spec = JSON.parse(arg(workerMode)!);
  if (workerMode === '--e2e-worker') await e2eWorker(spec); // answers requests on stdin
  else console.log(JSON.stringify(workerMode === '--peer-worker' ? await peerWorker(spec) : await readWorker(spec)));
  process.exit(0);
}

// --replot: redraw bench/results/decode.svg from latest.json (no measuring).
if (argv.includes('--replot')) {
  const r = JSON.parse(readFileSync('bench/results/latest.json', 'utf8'));
  writeFileSync('bench/results/decode.svg', await decodePlot(r.decode, `${r.machineLine}, ${r.build} build, 1 thread, ${r.date.slice(0, 10)}`));
  process.exit(0);
}

// --- the bench ----------------------------------------------------------------------------------
// --chromium: this Node process serves the page that runs the kernels in headless Chromium.
const runtime: 'node' | 'deno' | 'bun' | 'chromium' = argv.includes('--chromium') ? 'chromium'
  : (globalThis as any).Deno ? 'deno' : (process.versions as any).bun ? 'bun' : 'node';
const quick = argv.includes('--quick');
const ALL = ['kernels', 'llama', 'decode', 'peers'];
const only = arg('--only')?.split(',');
const sections = new Set(only ?? [...ALL, ...(argv.includes('--e2e') ? ['e2e'] : [])]);
const nodeOnly = runtime === 'node';
const log = (s: string) => console.error(s);
const t0 = performance.now();
const contexts = quick ? [512, 2048] : [512, 1024, 2048, 4096, 8192, 16384];
const inChromium = runtime === 'chromium'
  ? await benchInChromium({ quick, sections: ['kernels', 'llama', 'decode'].filter((x) => sections.has(x)), contexts, log }) : null;
const runtimeVersion = runtime === 'deno' ? (globalThis as any).Deno.version.deno : runtime === 'bun' ? (process.versions as any).bun
  : inChromium ? inChromium.version : process.version.slice(1);
// The 1-minute load average at each stage: this machine is shared, and others' work shows here.
const load: Record<string, number> = {};
const noteLoad = (stage: string) => { load[stage] = Math.round(os.loadavg()[0] * 100) / 100; };
noteLoad('start');

function cpuName(): string {
  const model = os.cpus()[0]?.model?.trim() || 'unknown CPU';
  let isa = '';
  try {
    // Linux only: the widest vector ISA the CPU offers (WebAssembly SIMD is 128-bit; native peers use this).
    const flags = readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '';
    isa = / avx512f/.test(flags) ? 'AVX-512' : / avx2/.test(flags) ? 'AVX2' : '';
  } catch { /* not Linux */ }
  return isa ? `${model} (${isa})` : model;
}

const date = new Date().toISOString();
const machine = {
  cpu: cpuName(),
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  os: `${os.platform()} ${os.arch()}`,
  runtime: `${runtime} ${runtimeVersion}`,
};
const RUNTIME_NAMES = { node: 'Node', deno: 'Deno', bun: 'Bun', chromium: 'headless Chromium' };
const machineLine = `${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os}, ${RUNTIME_NAMES[runtime]} ${runtimeVersion}`;
// End to end: ours in each weights format (f32 always, as the baseline), with this cache, in these builds.
const WEIGHTS_FORMATS = ['f32', 'bf16', 'int8', 'int4'] as const;
const e2eWeights = (arg('--weights')?.split(',') ?? ['f32']) as E2eWeights[];
const e2eCache = (arg('--cache') ?? 'f32') as CacheFormat;
const e2eBuilds = arg('--builds')?.split(',') as SimdBuild[] | undefined;
const peerGraphs = arg('--peer-graphs')?.split(',') as StepGraph[] | undefined;
for (const g of peerGraphs ?? []) if (!STEP_GRAPHS.includes(g)) throw new Error(`--peer-graphs: ${g} is not one of ${STEP_GRAPHS.join(', ')}`);
for (const w of e2eWeights) if (!(WEIGHTS_FORMATS as readonly string[]).includes(w)) throw new Error(`--weights: ${w} is not one of ${WEIGHTS_FORMATS.join(', ')}`);
if (!(CACHE_FORMATS as readonly string[]).includes(e2eCache)) throw new Error(`--cache: ${e2eCache} is not one of ${CACHE_FORMATS.join(', ')}`);
for (const b of e2eBuilds ?? []) if (b !== 'simd' && b !== 'relaxed') throw new Error(`--builds: ${b} is not simd or relaxed`);
const flags = [...(runtime === 'node' ? [] : ['--runtime', runtime]), ...(quick ? ['--quick'] : []),
  ...(only ? ['--only', only.join(',')] : sections.has('e2e') ? ['--e2e'] : []),
  ...(arg('--weights') ? ['--weights', e2eWeights.join(',')] : []), ...(arg('--cache') ? ['--cache', e2eCache] : []),
  ...(e2eBuilds ? ['--builds', e2eBuilds.join(',')] : []), ...(peerGraphs ? ['--peer-graphs', peerGraphs.join(',')] : [])];
const command = `npm run bench${flags.length ? ` -- ${flags.join(' ')}` : ''}`;
log(`mla-wasm bench on ${machineLine}${quick ? ' (quick)' : ''}; sections: ${[...sections].join(', ')}`);

const best = inChromium?.build ?? chooseBuild('auto');
// Ours runs at 1 thread and, where a worker pool is possible, at 2 (this machine's cores).
const threadCounts = inChromium?.threadCounts ?? (machine.cores >= 2 && threadsAvailable() ? [1, 2] : [1]);
const builds: SimdBuild[] = ['simd', 'relaxed'].filter((b) => b === 'simd' || best === 'relaxed') as SimdBuild[];

// 1. Kernels and their probes.
const kernels: KernelBenchResult[] = [...inChromium?.kernels ?? []];
if (sections.has('kernels') && !inChromium) {
  for (const build of builds) {
    log(`kernels, ${build} build:`);
    kernels.push(await benchKernels({ build, quick }));
  }
}

// The probes behind every floor: the highest this run saw (a floor from a lower figure would be
// easier to reach). Compute peak: either build's probe (both use the same FP pipes) or any GEMM of
// the build in use; DRAM: one process's read probes (one stream, two streams), raised below by the
// two-process probe and by the peer table's GEMVs.
async function probes() {
  if (inChromium) return inChromium.probes;
  const peaks: number[] = [], drams: number[] = [];
  for (const k of kernels) {
    peaks.push(k.peakGflops);
    drams.push(k.dramGBs);
    if (k.build === best) for (const r of k.rows) if (r.gflops) peaks.push(r.gflops);
  }
  if (!kernels.length) {
    for (const b of builds) peaks.push(await probePeak(b));
    drams.push(await probeDram(best));
  }
  return { peakGflops: Math.max(...peaks), dramGBs: Math.max(...drams) };
}
let p = await probes();
log(`probes: peak ${p.peakGflops.toFixed(1)} GFLOP/s, DRAM ${p.dramGBs.toFixed(1)} GB/s (one process)`);
let dram2: number | null = null;
/** Two processes reading at once; kept at the highest seen in this run (others' bursts only lower it). */
async function probe2(): Promise<void> {
  const v = await probeDramTwoProcesses(bundle, best).catch(() => null);
  if (v !== null) dram2 = Math.max(dram2 ?? 0, v);
  log(`probes: DRAM ${v ? v.toFixed(1) + ' GB/s' : 'n/a'} (two processes at once)`);
}
if (!inChromium && (sections.has('e2e') || sections.has('peers') || (sections.has('llama') && threadCounts.length > 1))) await probe2();

// 2. Peers (first, so that their GEMV figures can raise the DRAM figures of the floors below).
let peers: PeerResult[] = [];
let peersNote = '';
noteLoad('peers');
if (sections.has('peers')) {
  if (nodeOnly) {
    log('peers (each in a fresh Node process):');
    peers = benchPeers(bundle, best, quick, quick ? 1 : 2, log);
  } else {
    peersNote = `not run under ${runtime}: the peers' packages are measured under Node (npm run bench)`;
    log(`peers: ${peersNote}`);
  }
}

// A kernel that reads faster than a probe shows the probe is no bound: the floors take the highest
// bandwidth any GEMV of this run reached (ours or a peer's, rotating 64 MiB matrices) at that thread count.
function gemvBest(threads: number): number {
  return Math.max(0, ...peers.filter((x) => x.ok && x.threads === threads).flatMap((x) => x.rows.filter((r) => r.m === 1).map((r) => r.gbs)));
}
p = { ...p, dramGBs: Math.max(p.dramGBs, gemvBest(1)) };
if (gemvBest(2) > 0) dram2 = Math.max(dram2 ?? 0, gemvBest(2));

// 3. llama-bench rows.
let llama: LlamaRow[] = inChromium?.llama ?? [];
noteLoad('llama');
if (sections.has('llama') && !inChromium) {
  log(`llama-bench rows, ${best} build, threads ${threadCounts.join(' and ')}:`);
  llama = await benchLlama(best, { ...p, dramGBs2: dram2 }, threadCounts, quick, log);
}

// 4. Decode variants.
let decode: DecodeRow[] = inChromium?.decode ?? [];
noteLoad('decode');
if (sections.has('decode') && !inChromium) {
  log(`decode variants, ${best} build, contexts ${contexts.join(', ')}:`);
  decode = await benchDecode(best, contexts, log);
}

// 5. End to end.
let e2e: E2eResult | null = null;
if (sections.has('e2e') && inChromium) log('end to end: not run in Chromium (its sides are Node processes)');
else if (sections.has('e2e')) {
  log('end to end, V2-Lite dims, 2 layers, F32, 512 context:');
  // A fresh DRAM probe just before (minutes after the kernel bench); the floor takes the higher.
  noteLoad('e2e');
  const fresh = await probeDram(best);
  p = { ...p, dramGBs: Math.max(p.dramGBs, fresh) };
  await probe2();
  const e2eBuildList = e2eBuilds?.filter((b) => b === 'simd' || best === 'relaxed') ?? [best];
  // Each build's GEMV compute rate per weights format, for the rows' compute floors.
  const decodeRates: Partial<Record<SimdBuild, Record<DecodeFormat, number>>> = {};
  for (const b of e2eBuildList) decodeRates[b] = await probeDecodeRates(b);
  log(`  GEMV compute rates from L1, GB/s of weights: ${e2eBuildList.map((b) => `${b} ${Object.entries(decodeRates[b]!).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`).join('; ')}`);
  e2e = await benchE2e({ bundle, build: best, threadCounts, dramGBs1: p.dramGBs, dramGBs2: dram2, nodePeers: nodeOnly && !argv.includes('--no-peers'), log,
    weights: e2eWeights, cache: e2eCache, builds: e2eBuildList, decodeRates, peerGraphs });
}

noteLoad('end');
const seconds = (performance.now() - t0) / 1000;
const result = { date, command, machine, machineLine, runtime, quick, sections: [...sections], seconds, loadAverage: load, build: best, probes: { ...p, dramGBs2: dram2 }, kernels, llama, decode, peers, peersNote, e2e };

/**
 * On 2 cores, others' work leaves the second core busy: the bench itself counts about 1 in the load
 * average, so a load of 1.75 or more means roughly a core's worth of other processes.
 */
function busyNote(stage: string): string {
  const l = Math.max(load[stage] ?? 0, load.end ?? 0);
  return l >= 1.75 && machine.cores <= 2
    ? ` The 1-minute load average was ${l} during this stage (the bench itself counts about 1): other processes held much of the second core, so the 2-thread rows show little of 2-core scaling.`
    : '';
}

// --- Markdown -----------------------------------------------------------------------------------
const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '—');
const md: string[] = [];
md.push(`Machine: ${machineLine}. Date: ${date.slice(0, 10)}. Command: \`${command}\` (${f(seconds, 0)} s). ` +
  `Kernel build: ${best}. Every figure below comes from this one run. ` +
  `The machine is shared: 1-minute load average ${Object.entries(load).map(([k, v]) => `${v} (${k})`).join(', ')}, the bench itself counting about 1.`, '');
md.push(`**Probes** (floors use the highest of this run): compute peak ${f(p.peakGflops)} GFLOP/s` +
  `${kernels.length ? ` (probes: ${kernels.map((k) => `${k.build} ${f(k.peakGflops)}`).join(', ')}; the rest is the best GEMM)` : ''}, ` +
  `DRAM read ${f(p.dramGBs)} GB/s one thread${dram2 ? `, ${f(dram2)} GB/s two threads` : ''} (the highest of the read probes, ` +
  `one process and two at once, each reading one stream and two streams 2 MiB apart, and of every GEMV from DRAM in the kernel and peer tables at that thread count)` +
  `${kernels.length ? `; the kernel bench's probes read ${kernels.map((k) => `${f(k.dramOneStreamGBs)} GB/s as one stream and ${f(k.dramPairsGBs)} as two (${k.build})`).join(', ')}` : ''}.`, '');

if (llama.length) {
  md.push(`### Prefill and decode (llama-bench style), ${best} build, ${threadCounts.join(' and ')} thread${threadCounts.length > 1 ? 's' : ''}`, '');
  md.push('Floor: prefill = flops / peak; decode = max(bytes read / DRAM, flops / peak), at the middle of the 64 steps\' contexts; ' +
    'for 2 threads, twice one core\'s peak and the DRAM bandwidth of two readers; for decode, the run\'s DRAM figure or, when higher, ' +
    'the read probe beside the test (256 MiB on as many threads in this process, just before and after it: the better of the two). ' +
    'floor/measured = 1 is the roofline; "× 1t" = the 1-thread time / this one. Each tg64 test is the median of 5 runs.', '');
  md.push('| model | test | threads | tokens/s | ms/token | floor ms/token | bound | floor/measured | × 1t | read probe beside, GB/s | note |', '|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of llama) {
    md.push(`| ${r.model} | ${r.test} | ${r.threads} | ${f(r.tokensPerS)} | ${f(r.msPerToken, 3)} | ${f(r.floorMs, 3)} | ${r.bound} | ${f(r.ratio, 2)} | ${r.speedup ? f(r.speedup, 2) : ''} | ${r.probeGBs ? f(r.probeGBs) : ''} | ${r.note ?? ''} |`);
  }
  md.push(busyNote('llama').trim(), '');
}

if (e2e) {
  const c = e2e.config;
  md.push(`### End to end: one decode step, ${c.num_hidden_layers}-layer V2-Lite-dims checkpoint (F32, hidden ${c.hidden_size}, MLP ${c.intermediate_size}, vocab ${c.vocab_size}), ${e2e.context} context`, '');
  md.push(`Reads ${f(e2e.weightBytesRead / 1e9, 3)} GB of weights and ${f(e2e.cacheBytes / 1e6, 2)} MB of cache per token. ` +
    `Floor = those bytes / the highest DRAM figure of the run for that thread count, the probes between these steps included (${f(e2e.dramGBs1)} GB/s one thread, ${f(e2e.dramGBs2 ?? NaN)} GB/s two). ` +
    `Each ONNX graph (built in TypeScript from the same weights) is checked first: its logits against ours in the same weights format, max |Δ| / max |logit| ≤ 1e-4 ` +
    `for f32, ≤ ${NARROW_TOL} for the int8 / int4 graphs (both sides quantise the activations to int8, each its own way) ` +
    `(${e2e.verified ? 'passed' : '**FAILED**'}; max |logit| ${f(e2e.maxAbsLogit, 2)} with f32 weights). Ours: loadModel + prefill(${e2e.context}) at ${f(e2e.prefillTokensPerS)} tokens/s, then step.`, '');
  const rates = Object.entries(e2e.decodeRates);
  if (rates.length) {
    md.push(`GEMV compute rates (probe_matvec: each format's matvec pair loop on one pair of 2048-long rows in L1, the same instructions without DRAM; GB/s of weights, codes and scales, one core): ` +
      rates.map(([b, r]) => `${b} build ${Object.entries(r!).map(([k, v]) => `${k} ${f(v)}`).join(', ')}`).join('; ') + '.', '');
  }
  md.push('| runtime | threads | MB read/token | ms/token (median) | best | × f32 weights | memory floor ms | compute floor ms | bound | floor/measured | read probes between the steps, GB/s | floor/measured, step by step | their ms / our ms | max abs Δ logit | note |', '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of e2e.rows) {
    md.push(`| ${r.runtime} | ${r.threads} | ${f((r.bytesRead ?? NaN) / 1e6, 0)} | ${f(r.msPerToken, 2)} | ${f(r.msBest, 2)} | ${r.vsF32 ? f(r.vsF32, 2) : ''} | ${f(r.memoryFloorMs ?? NaN, 2)} | ${r.computeFloorMs !== undefined ? f(r.computeFloorMs, 2) : ''} | ${r.bound ?? ''} | ${f(r.ratio, 2)} | ${f(r.probeGBs ?? NaN)} | ${f(r.ratioInterleaved ?? NaN, 2)} | ${r.oursSpeedup ? f(r.oursSpeedup, 2) : ''} | ${r.maxAbsDiff !== undefined ? `${r.maxAbsDiff.toExponential(1)} (${r.relDiff!.toExponential(1)} of max)` : ''} | ${r.note ?? ''} |`);
  }
  if (e2e.weights.length > 1) md.push('', '"× f32 weights" = the f32-weights row\'s time (same build, same threads, same run, interleaved) / this row\'s; ' +
    'MB read/token = the weights in that format (scales included, one embedding row) and the cache; memory floor = those bytes / the run\'s DRAM figure; ' +
    'compute floor = each format\'s weight bytes (int4 keeps lm_head in int8, kv_b_proj stays f32) / that format\'s GEMV compute rate above × threads; ' +
    'floor/measured uses the higher of the two ("bound"). The compute floor counts the GEMVs alone, at L1 speed: attention, norms and the rest of the step come on top.');
  md.push('', 'Each side (ours, and each peer at each thread count) runs in a process of its own, all loaded at once; the run asks them in turn ' +
    `for ${e2e.stepsPerRound} timed steps (after ${e2e.warmMs} ms of untimed ones), ${e2e.rounds} rounds, so every side is sampled across the same minutes. ` +
    '"their ms / our ms" compares a peer with ours in the same weights format (the graph\'s: int4 for MatMulNBits 4-bit, int8 for the 8-bit forms) at the same thread count; > 1 means ours is faster. ' +
    '"Step by step": before every second timed step, the process that times it (ours, or the peer\'s) reads 256 MiB on as many threads, ' +
    'as one stream and as two per thread (the better counts); each step\'s floor comes from the probe just before it, and the column is ' +
    'the median of floor / step time (the probes column: their median). This machine\'s bandwidth moves within minutes, ' +
    'so the run\'s floor (the highest figure of the whole run) can come from another moment than the steps.' + busyNote('e2e'), '');
}

if (peers.length || peersNote) {
  md.push('### Peers on the same shapes (f32, 1 and 2 threads, each in a fresh Node process, best time)', '');
  if (peersNote) md.push(peersNote, '');
  else {
    const ours = peers.filter((x) => x.peer === 'mla-wasm' && x.ok);
    const others = peers.filter((x) => x.peer !== 'mla-wasm');
    const label = (x: PeerResult) => `${x.peer} ${x.version}, ${x.threads}t`;
    md.push('GEMM in GFLOP/s, GEMV (1×K×N) in GB/s of weights (rotating four 64 MiB matrices so none is cached). Ratio = ours / peer at the same thread count (> 1: ours is faster).', '');
    md.push(`| shape M×K×N | ${ours.map((o) => `ours (${o.version}), ${o.threads}t`).join(' | ')} | ${others.map(label).join(' | ')} |`, `|---|${ours.map(() => '---').join('|')}|${others.map(() => '---').join('|')}|`);
    for (const [m, k, n] of SHAPES) {
      const shape = `${m}×${k}×${n}`;
      const val = (x?: PeerResult) => {
        const r = x?.rows.find((y) => y.shape === shape);
        return r ? (m === 1 ? r.gbs : r.gflops) : NaN;
      };
      const cell = (x: PeerResult) => {
        const v = val(x), o = val(ours.find((y) => y.threads === x.threads));
        return Number.isFinite(v) ? `${f(v)}${Number.isFinite(o) ? ` (ratio ${f(o / v, 2)})` : ''}` : '—';
      };
      md.push(`| ${shape} | ${ours.map((o) => f(val(o))).join(' | ')} | ${others.map(cell).join(' | ')} |`);
    }
    const notes = peers.filter((x) => x.note).map((x) => `${label(x)}: ${x.note}`);
    if (busyNote('peers')) notes.push(busyNote('peers').trim());
    if (notes.length) md.push('', ...notes.map((n) => `- ${n}`));
    md.push('');
  }
}

if (kernels.length) {
  md.push('### Kernels against the same-run probes (1 thread)', '');
  md.push('DRAM: the better of the two read probes (one stream, two streams 2 MiB apart), raised to the fastest GEMV of the table that reads from DRAM when it reads more.', '');
  md.push('| build | kernel | shape M×K×N | measured | same-run probe | ratio | note |', '|---|---|---|---|---|---|---|');
  for (const k of kernels) {
    for (const r of k.rows) {
      const measured = r.gflops !== undefined ? `${r.gflops.toFixed(1)} GFLOP/s` : `${r.gbs!.toFixed(1)} GB/s`;
      const probe = r.gflops !== undefined ? `peak ${k.peakGflops.toFixed(1)} GFLOP/s` : `DRAM ${k.dramGBs.toFixed(1)} GB/s`;
      md.push(`| ${k.build} | ${r.kernel} | ${r.shape} | ${measured} | ${probe} | ${r.ratio.toFixed(2)} | ${r.note ?? ''} |`);
    }
  }
  md.push('');
}

// Quick or partial runs are for looking, not for the committed results.
const partial = only !== undefined || quick;
const suffix = `${runtime === 'node' ? '' : `-${runtime}`}${partial ? '.partial' : ''}`;
const svgName = `decode${suffix}.svg`;
if (decode.length) {
  md.push(`### Decode: MLA vs MHA / GQA-4 / MQA at the same dims, ${best} build, 1 thread`, '');
  md.push('Synthetic model with DeepSeek-V2-Lite attention dims (hidden 2048, 16 heads, kv_lora 512, rope 64, nope 128, v 128; MHA/GQA/MQA with K 192, V 128 per head), 2 layers, MLP 1408, vocab 1024. ' +
    'The cache is filled with random rows and one step at that position is timed (median); KV cache = all layers at that context.', '');
  const ctxs = [...new Set(decode.map((r) => r.context))];
  md.push(`| variant | cache B/token | ${ctxs.map((c) => `ctx ${c}: MiB, ms`).join(' | ')} |`, `|---|---|${ctxs.map(() => '---').join('|')}|`);
  for (const v of [...new Set(decode.map((r) => r.variant))]) {
    const rows = decode.filter((r) => r.variant === v);
    md.push(`| ${v} | ${rows[0].cacheBytesPerToken} | ${rows.map((r) => `${f(r.cacheBytes / 2 ** 20, 1)}, ${f(r.msPerToken, 2)}`).join(' | ')} |`);
  }
  md.push('', `![decode time and cache vs context](${svgName})`, '');
}

const table = md.join('\n');
const base = `bench/results/latest${suffix}`;
mkdirSync('bench/results', { recursive: true });
writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
writeFileSync(`${base}.md`, table + '\n');
if (decode.length) {
  const svg = await decodePlot(decode, `${machineLine}, ${best} build, 1 thread, ${date.slice(0, 10)}`);
  writeFileSync(`bench/results/${svgName}`, svg);
}
console.log(table);
log(`wrote ${base}.json and .md (${f(seconds, 0)} s)`);
