// End to end: one decode step of a DeepSeek-V2-Lite-dims checkpoint (checkpoint.ts: 2 dense
// layers, F32, random weights as safetensors) at 512 context, ours (loadModel, prefill 512 tokens,
// step) beside the same step as an ONNX graph (onnx-step.ts) under onnxruntime-web (wasm) and
// onnxruntime-node (native), at 1 and 2 threads, each side in a process of its own (protocol.ts).
// Ours in int8 / int4 weights has narrow graphs beside it: MatMulNBits on ours' very blocks, or
// MatMulInteger on per-column int8 (PEER_GRAPHS), each checked against ours in that format.
//
// The per-token floor is (weight bytes read + cache bytes) / same-run DRAM bandwidth, two ways: the
// run's (the highest read figure of the whole run at that thread count) and, step by step, a read
// probe on as many threads in the same process taken just before the step (the median of the
// ratios is reported), since this machine's bandwidth moves between minutes. Ours also has a
// compute floor: each weights format's bytes / the rate its GEMV decodes them from L1 (same run);
// the floor is the higher of the two.
import { parseConfig, type CacheFormat, type SimdBuild, type WeightsOption } from '../../src/internal.js';
import type { DecodeFormat } from '../probes.js';
import { decodeBytesByFormat, decodeBytesFor } from '../roofline.js';
import { E2E_CONFIG, e2eDir, writeCheckpoint } from './checkpoint.js';
import { GRAPH_LABELS, GRAPH_WEIGHTS, NARROW_TOL, stepGraphWeightBytes, writeOnnx, type StepGraph } from './onnx-step.js';
import { CONTEXT, decodeLogits, WARM_MS, type E2eReady, type E2eWorkerSpec } from './protocol.js';
import { WorkerProcess } from './worker-process.js';

/** Rounds in which every side times STEPS_PER_ROUND runs. */
const ROUNDS = 4, STEPS_PER_ROUND = 4;

/** A weights format the e2e bench can load ours in. */
export type E2eWeights = Exclude<WeightsOption, 'auto'>;

type OrtPeer = 'onnxruntime-web' | 'onnxruntime-node';
/**
 * The graph each peer runs beside ours in a weights format, by default: the faster of the forms
 * tried on one 2048 → 21888 product (2026-12-06, 1 thread). int8: MatMulNBits 8-bit ran 1.8 ms
 * native against MatMulInteger's 6.5, but under onnxruntime-web 250 ms against 62 (its wasm build
 * has no MatMulNBits kernel; it widens the whole matrix each run). int4 has only MatMulNBits.
 */
const PEER_GRAPHS: Record<'f32' | 'int8' | 'int4', Record<OrtPeer, StepGraph>> = {
  f32: { 'onnxruntime-web': 'f32', 'onnxruntime-node': 'f32' },
  int8: { 'onnxruntime-web': 'mmi8', 'onnxruntime-node': 'nbits8' },
  int4: { 'onnxruntime-web': 'nbits4', 'onnxruntime-node': 'nbits4' },
};

export interface E2eRow {
  runtime: string;
  threads: number;
  /** Ours: the build, weights and cache formats it ran. */
  build?: SimdBuild;
  weights?: E2eWeights;
  cache?: CacheFormat;
  /** Bytes this row's step reads (weights in its format, cache), and its floor from the same-run probes. */
  bytesRead?: number;
  /** Ours: the f32-weights row's time (same build, threads) / this one's; > 1: faster than f32. */
  vsF32?: number;
  /** A peer: the graph it ran, and the weights format of ours it is compared with. */
  graph?: StepGraph;
  oursWeights?: E2eWeights;
  /** A peer: max |Δ logit| / max |logit| against ours in that format, and the bound it was held to. */
  relDiff?: number;
  tolerance?: number;
  msPerToken: number;
  msBest: number;
  /** The memory floor: bytesRead / the run's DRAM figure for this thread count. */
  memoryFloorMs?: number;
  /**
   * Ours: the compute floor, each format's weight bytes / the rate its GEMV decodes them at from
   * L1 (probeDecodeRates of this build, times the threads).
   */
  computeFloorMs?: number;
  /** max(memory, compute): for the peers the memory floor. */
  floorMs: number;
  /** Which floor floorMs is. */
  bound?: 'memory' | 'compute';
  /** floor / measured */
  ratio: number;
  /** The median of the in-process read probes taken between the timed steps, GB/s. */
  probeGBs?: number;
  /** The median over the timed steps of floor / step time, each floor from the probe just before that step. */
  ratioInterleaved?: number;
  /** Every timed step (ms) and the probe before it (GB/s), in order. */
  steps?: { ms: number; probeGBs: number }[];
  /** ours / this row's time: > 1 means ours is faster */
  oursSpeedup?: number;
  maxAbsDiff?: number;
  note?: string;
}

export interface E2eResult {
  config: typeof E2E_CONFIG;
  context: number;
  weightBytesRead: number;
  cacheBytes: number;
  weights: E2eWeights[];
  cache: CacheFormat;
  builds: SimdBuild[];
  /** probeDecodeRates per build, GB/s of weights one core decodes from L1. */
  decodeRates: Partial<Record<SimdBuild, Record<DecodeFormat, number>>>;
  dramGBs1: number;
  dramGBs2: number | null;
  prefillTokensPerS: number;
  rows: E2eRow[];
  rounds: number;
  stepsPerRound: number;
  warmMs: number;
  maxAbsLogit: number;
  verified: boolean;
}

export async function benchE2e(opts: { bundle: string; build: SimdBuild; threadCounts: number[]; dramGBs1: number; dramGBs2: number | null; nodePeers: boolean;
  log: (s: string) => void; weights?: E2eWeights[]; cache?: CacheFormat; builds?: SimdBuild[];
  decodeRates?: Partial<Record<SimdBuild, Record<DecodeFormat, number>>>;
  /** The graphs the peers run (each under both); default: PEER_GRAPHS for each weights format of ours but bf16. */
  peerGraphs?: StepGraph[] }): Promise<E2eResult> {
  const { log } = opts;
  // f32 weights always run, first: every other format's ratio is to it, and its logits are the peers' reference.
  const formats: E2eWeights[] = ['f32', ...(opts.weights ?? []).filter((w) => w !== 'f32')];
  const cache = opts.cache ?? 'f32';
  const builds = opts.builds ?? [opts.build];
  // The ONNX graph reads an f32 cache: the peers run only beside an f32 cache.
  const nodePeers = opts.nodePeers && cache === 'f32';
  const c = parseConfig(E2E_CONFIG);
  const dir = e2eDir();
  writeCheckpoint(dir, c, log);
  const ortPeers: OrtPeer[] = ['onnxruntime-web', 'onnxruntime-node'];
  // Each peer's graphs, in the order of ours' formats; a graph whose format ours does not run has no reference.
  const peerSides: { peer: OrtPeer; graph: StepGraph }[] = !nodePeers ? [] : opts.peerGraphs
    ? ortPeers.flatMap((peer) => opts.peerGraphs!.filter((g) => formats.includes(GRAPH_WEIGHTS[g])).map((graph) => ({ peer, graph })))
    : ortPeers.flatMap((peer) => formats.filter((w): w is 'f32' | 'int8' | 'int4' => w !== 'bf16').map((w) => ({ peer, graph: PEER_GRAPHS[w][peer] })));
  for (const graph of new Set(peerSides.map((x) => x.graph))) writeOnnx(dir, c, log, graph);
  const peerWeights = new Set(peerSides.map((x) => GRAPH_WEIGHTS[x.graph]));

  // Every side loaded in its own process, in turn (ours at 1 thread first: its logits are the ones
  // the others are checked against, and it writes the ONNX graph's inputs).
  type Runner = { label: string; spec: E2eWorkerSpec; threads: number; proc: WorkerProcess; ready: E2eReady; times: number[]; probeGBs: number[]; stopped?: string };
  const runners: Runner[] = [];
  const failed: { label: string; spec: E2eWorkerSpec; threads: number; note: string }[] = [];
  let oursLogits: string | null = null;
  // Each build and weights format's logits at its first thread count: the others must match them bit for bit.
  const firstLogits = new Map<string, string>();
  const sides: E2eWorkerSpec[] = [
    ...builds.flatMap((build) => formats.flatMap((weights) => opts.threadCounts.map((threads) => ({ peer: 'mla-wasm' as const, threads, dir, build, weights, cache })))),
    ...peerSides.flatMap(({ peer, graph }) => [1, 2].map((threads) => ({ peer, threads, dir, build: opts.build, graph }))),
  ];
  const written = new Set<string>();
  const oursLabel = (s: E2eWorkerSpec) => `mla-wasm (${s.build} build, ${s.weights} weights${cache !== 'f32' ? `, ${cache} cache` : ''})`;
  try {
    for (const spec of sides) {
      const ours = spec.peer === 'mla-wasm';
      log(`  ${spec.peer} ${spec.threads}t: loading …`);
      // Each graph's inputs come from ours in its weights format (the run's build, first thread count), f32 cache.
      const writeInputs = ours && spec.build === opts.build && peerWeights.has(spec.weights as 'f32') && !written.has(spec.weights!);
      if (writeInputs) written.add(spec.weights!);
      const proc: WorkerProcess = new WorkerProcess(opts.bundle, { ...spec, writeInputs });
      const ready: E2eReady | null = await proc.next<E2eReady>();
      const label = ours ? oursLabel(spec) : `${spec.peer} ${ready?.version ?? '?'} (${GRAPH_LABELS[spec.graph ?? 'f32']})`;
      if (!ready?.ok) {
        const note = ready?.note ?? `process failed: ${proc.failure}`;
        await proc.close();
        if (ours && oursLogits === null) throw new Error(`e2e: ours at ${spec.threads} threads failed: ${note}`);
        failed.push({ label, spec, threads: spec.threads, note });
        log(`  ${label} ${spec.threads}t: skipped (${note})`);
        continue;
      }
      if (ours) {
        // The pool's split keeps every output on one thread's code path: the same logits, bit for bit.
        const key = `${spec.build} ${spec.weights}`, first = firstLogits.get(key);
        if (first !== undefined && ready.logits !== first) throw new Error(`e2e: ${key}: ${spec.threads} threads gave other logits than ${opts.threadCounts[0]}`);
        if (first === undefined) firstLogits.set(key, ready.logits!);
        if (spec.build === opts.build && spec.weights === 'f32') oursLogits ??= ready.logits!;
      }
      runners.push({ label, spec, threads: spec.threads, proc, ready, times: [], probeGBs: [] });
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const r of runners.filter((x) => !x.stopped)) {
        const block = await r.proc.block(STEPS_PER_ROUND);
        if (block) { r.times.push(...block.times); r.probeGBs.push(...block.probeGBs); continue; }
        r.stopped = `its process stopped after ${r.times.length} timed steps: ${r.proc.failure}`;
        log(`  ${r.label} ${r.threads}t: ${r.stopped}`);
      }
    }
  } finally {
    await Promise.all(runners.map((r) => r.proc.close()));
  }

  const reference = decodeLogits(oursLogits ?? [...firstLogits.values()][0]);
  const maxAbsLogit = reference.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const bytesOf = (s: E2eWorkerSpec) => {
    if (s.peer !== 'mla-wasm') return stepGraphWeightBytes(c, s.graph ?? 'f32') + decodeBytesFor(c, CONTEXT, 'f32', 'f32').cache;
    const b = decodeBytesFor(c, CONTEXT, s.weights ?? 'f32', cache);
    return b.weights + b.cache;
  };
  const bytes = decodeBytesFor(c, CONTEXT, 'f32', 'f32');
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  let verified = true;
  for (const r of runners.filter((x) => x.times.length === 0)) failed.push({ label: r.label, spec: r.spec, threads: r.threads, note: r.stopped! });
  const rows: E2eRow[] = runners.filter((r) => r.times.length > 0).map((r) => {
    const read = bytesOf(r.spec), floorAt = (gbs: number) => read / (gbs * 1e6);
    const m = {
      msPerToken: median(r.times), msBest: Math.min(...r.times), probeGBs: median(r.probeGBs),
      ratioInterleaved: median(r.times.map((t, i) => floorAt(r.probeGBs[i]) / t)),
      steps: r.times.map((t, i) => ({ ms: +t.toFixed(3), probeGBs: +r.probeGBs[i].toFixed(2) })),
    };
    let check: { maxAbsDiff?: number; relDiff?: number; tolerance?: number; graph?: StepGraph; oursWeights?: E2eWeights; note?: string } = {};
    if (r.ready.peer !== 'mla-wasm') {
      // Against ours in the graph's weights format (the run's build, first thread count).
      const graph = r.spec.graph ?? 'f32', oursWeights = GRAPH_WEIGHTS[graph];
      const ref = firstLogits.get(`${opts.build} ${oursWeights}`);
      const tolerance = graph === 'f32' ? 1e-4 : NARROW_TOL;
      if (ref === undefined) {
        verified = false;
        check = { graph, oursWeights, note: `no logits of ours in ${oursWeights} to check against: not comparable` };
      } else {
        const theirs = decodeLogits(r.ready.logits!), mine = decodeLogits(ref);
        let maxAbsDiff = 0;
        for (let i = 0; i < theirs.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(theirs[i] - mine[i]));
        const scale = Math.max(1, mine.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
        const ok = theirs.length === mine.length && maxAbsDiff <= tolerance * scale;
        if (!ok) verified = false;
        check = { graph, oursWeights, maxAbsDiff, relDiff: maxAbsDiff / scale, tolerance,
          ...(ok ? {} : { note: `logits differ from ours (${oursWeights}) by ${maxAbsDiff.toExponential(2)}: not comparable` }) };
      }
    }
    log(`  ${r.label} ${r.threads}t: ${m.msPerToken.toFixed(2)} ms/token (best ${m.msBest.toFixed(2)}), probes ${m.probeGBs.toFixed(1)} GB/s, ` +
      `load ${(r.ready.loadMs! / 1000).toFixed(1)} s${r.ready.prefillMs ? `, prefill ${CONTEXT} tokens ${(r.ready.prefillMs / 1000).toFixed(1)} s` : ''}`);
    const note = [check.note, r.stopped].filter(Boolean).join('; ');
    const ours = r.spec.peer === 'mla-wasm' ? { build: r.spec.build, weights: r.spec.weights, cache } : {};
    return { runtime: r.label, threads: r.threads, ...ours, bytesRead: read, ...m, floorMs: NaN, ratio: NaN, ...check, ...(note ? { note } : {}) };
  });
  for (const f of failed) rows.push({ runtime: f.label, threads: f.threads, bytesRead: bytesOf(f.spec), msPerToken: NaN, msBest: NaN, floorMs: NaN, ratio: NaN, note: `skipped: ${f.note}` });
  // The run's floors: the highest bandwidth the run saw, the probes between the steps included.
  // Two threads read at least as fast as one: the 2-thread figure is never below the 1-thread one.
  const seen = (t: number) => runners.filter((r) => r.threads === t).flatMap((r) => r.probeGBs);
  const dram1 = Math.max(opts.dramGBs1, ...seen(1));
  const dram2 = Math.max(dram1, opts.dramGBs2 ?? 0, ...seen(2));
  const f32Rows = rows.filter((r) => r.weights === 'f32');
  const rates = opts.decodeRates ?? {};
  for (const r of rows) {
    r.memoryFloorMs = r.bytesRead! / ((r.threads === 1 ? dram1 : dram2) * 1e6);
    const rate = r.build ? rates[r.build] : undefined;
    if (rate && r.weights) {
      let ms = 0;
      // The e2e checkpoint's formats all have a probe (K-quants come only from GGUF files).
      for (const [format, b] of decodeBytesByFormat(c, r.weights)) ms += b / (rate[format as keyof typeof rate] * r.threads * 1e6);
      r.computeFloorMs = ms;
    }
    r.floorMs = Math.max(r.memoryFloorMs, r.computeFloorMs ?? 0);
    r.bound = (r.computeFloorMs ?? 0) > r.memoryFloorMs ? 'compute' : 'memory';
    r.ratio = r.floorMs / r.msPerToken;
    if (r.weights) {
      const base = f32Rows.find((x) => x.threads === r.threads && x.build === r.build);
      if (base && base !== r) r.vsF32 = base.msPerToken / r.msPerToken;
    } else {
      const o = rows.find((x) => x.threads === r.threads && x.build === opts.build && x.weights === (r.oursWeights ?? 'f32'));
      if (o && Number.isFinite(r.msPerToken)) r.oursSpeedup = r.msPerToken / o.msPerToken;
    }
  }
  return {
    config: E2E_CONFIG, context: CONTEXT, weightBytesRead: bytes.weights, cacheBytes: bytes.cache, weights: formats, cache, builds, decodeRates: rates,
    dramGBs1: dram1, dramGBs2: dram2, prefillTokensPerS: CONTEXT / runners[0].ready.prefillMs! * 1000,
    rows, rounds: ROUNDS, stepsPerRound: STEPS_PER_ROUND, warmMs: WARM_MS, maxAbsLogit, verified,
  };
}
