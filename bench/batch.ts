// Batched decode across sessions (model.stepBatch) on the synthetic V2-Lite-attention-dims model
// (bench/decode.ts: 2 layers, hidden 2048, 16 heads, kv_lora_rank 512): aggregate tokens/s and the
// time of one step (each session's per-token latency) at B sessions, each at --context positions.
// Batch sizes are interleaved round by round; medians over the rounds. Each round also probes, on the
// same threads, the f32 product at 1, 8 and 64 rows of one 64 MiB weight matrix (matvec, gemv-rows,
// matmul_nt's dot tiles): the memory rate that bounds B = 1 and the compute rates that bound B ≥ 8.
//   node scripts/run-ts.mjs bench/batch.ts [--threads 1] [--weights f32|bf16|int8|int4] [--rounds 5] [--steps 8] [--context 256]
//     [--json bench/results/batch.json]   (adds this run's rows to that file, for bench/batch-plot.ts)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { expectedTensors, loadKernels, Ops, type Matrix, type WeightsOption } from '../src/internal.js';
import { loadSyntheticModel } from './decode.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const THREADS = Number(arg('threads', '1'));
const ROUNDS = Number(arg('rounds', '5'));
const STEPS = Number(arg('steps', '8'));
const CONTEXT = Number(arg('context', '256'));
const WEIGHTS = arg('weights', 'f32') as Exclude<WeightsOption, 'auto'>;
const JSON_FILE = arg('json', '');
const SIZES = [1, 2, 4, 8, 16];

const load0 = loadavg()[0];
const model = await loadSyntheticModel(THREADS, WEIGHTS);

// The probe: W [PN, PK] f32 (64 MiB, far past the caches) times PM rows, on kernels and a pool of its own.
const PN = 8192, PK = 2048, PM = 64;
const probe = await loadKernels({ simd: model.simd, threads: THREADS });
const probeOps = new Ops(probe.kernels, probe.pool, 0, 0);
const pw = probe.heap.alloc(PN * PK * 4), px = probe.heap.alloc(PM * PK * 4), py = probe.heap.alloc(PM * PN * 4);
probe.heap.f32(pw, PN * PK).forEach((_, i, v) => { v[i] = ((i * 7919) % 1999) / 1999 - 0.5; });
probe.heap.f32(px, PM * PK).forEach((_, i, v) => { v[i] = ((i * 104729) % 997) / 997 - 0.5; });
const probeMatrix: Matrix = { ptr: pw, rows: PN, cols: PK, panelCols: PK, format: 'f32', scales: 0 };
/** Seconds of the fastest of `reps` products of `rows` rows with the probe matrix. */
const probeSeconds = (rows: number, reps: number) => {
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    probeOps.linear({ x: { ptr: px, stride: PK }, w: probeMatrix, y: { ptr: py, stride: PN }, rows });
    best = Math.min(best, performance.now() - t);
  }
  return best / 1000;
};
const rates = { matvecGBs: 0, rows8GFlops: 0, matmul64GFlops: 0 }; // the best over the rounds
const runProbe = () => {
  rates.matvecGBs = Math.max(rates.matvecGBs, PN * PK * 4 / probeSeconds(1, 8) / 1e9);
  rates.rows8GFlops = Math.max(rates.rows8GFlops, 2 * 8 * PN * PK / probeSeconds(8, 4) / 1e9);
  rates.matmul64GFlops = Math.max(rates.matmul64GFlops, 2 * PM * PN * PK / probeSeconds(PM, 2) / 1e9);
};
runProbe(); // warm
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// Sessions whose first CONTEXT rows are taken as they are (skipTo): attention reads CONTEXT keys.
const sessions = SIZES.map((B) => Array.from({ length: B }, () => model.createSession({ contextLength: CONTEXT + STEPS + 1 })));
const stepMs = SIZES.map(() => [] as number[]);
// The same steps without the multi-row GEMV kernels (rows ≥ 2 on matvec per row / matmul_nt), interleaved.
const withoutMs = SIZES.map(() => [] as number[]);
const rowsMax = model.ops.rowsMax;
for (let r = 0; r < ROUNDS; r++) {
  runProbe();
  SIZES.forEach((B, k) => {
    for (const [max, times] of [[rowsMax, stepMs[k]], [1, withoutMs[k]]] as const) {
      if (B === 1 && max === 1) continue;
      model.ops.rowsMax = max;
      const batch = sessions[k];
      for (const s of batch) s.skipTo(CONTEXT);
      model.stepBatch(batch.map((session, i) => ({ session, id: i }))); // warm
      const t = performance.now();
      for (let n = 0; n < STEPS - 1; n++) model.stepBatch(batch.map((session, i) => ({ session, id: (n * 31 + i) % 1000 })));
      times.push((performance.now() - t) / (STEPS - 1));
    }
  });
}
model.ops.rowsMax = rowsMax;
const base = 1000 / median(stepMs[0]);
const load = `${load0.toFixed(2)} → ${loadavg()[0].toFixed(2)}`;
console.log(`threads ${model.threads}, ${model.simd} build, ${WEIGHTS} weights, context ${CONTEXT}, ${ROUNDS} rounds × ${STEPS - 1} timed steps, ` +
  `1-minute load average ${load}\n`);
console.log('| B | ms per step (per-token latency) | aggregate tokens/s | × B=1 | without gemv-rows: ms per step | × B=1 |\n|---|---|---|---|---|---|');
const rows = SIZES.map((B, k) => {
  const ms = median(stepMs[k]), tps = (1000 * B) / ms, before = B === 1 ? ms : median(withoutMs[k]);
  console.log(`| ${B} | ${ms.toFixed(2)} | ${tps.toFixed(1)} | ${(tps / base).toFixed(2)} | ${before.toFixed(2)} | ${((1000 * B) / before / base).toFixed(2)} |`);
  return { threads: model.threads, weights: WEIGHTS, simd: model.simd, B, msPerStep: ms, tokensPerSecond: tps, msWithout: before, load,
    probe: rates };
});
// The ceiling: B = 1 reads every weight once (≥ weightBytes / the matvec rate a step); B rows do 2·B
// flops a weight (attention left out), ≥ 2·weights / the GEMM rate a token. So tokens/s at B over
// B = 1 is at most (B = 1's step) / (2·weights / the GEMM rate): with B = 1 at its read floor, and
// with B = 1 as measured.
// The weights a token multiplies: every matrix but the embedding table (unless it is the head too).
let weights = 0;
for (const [name, shape] of expectedTensors(model.config)) {
  if (shape.length === 2 && (name !== 'model.embed_tokens.weight' || model.config.tieEmbeddings)) weights += shape[0] * shape[1];
}
const readFloorMs = model.weightBytes / rates.matvecGBs / 1e6, b1Ms = median(stepMs[0]);
const computeFloorMs = (rate: number) => 2 * weights / rate / 1e6;
const ceiling = (rate: number) => `${(readFloorMs / computeFloorMs(rate)).toFixed(2)}× / ${(b1Ms / computeFloorMs(rate)).toFixed(2)}×`;
const probeLine = `Probe (same run, ${model.threads} thread${model.threads > 1 ? 's' : ''}, best of ${ROUNDS} rounds, one 64 MiB f32 matrix): ` +
  `matvec ${rates.matvecGBs.toFixed(1)} GB/s, gemv-rows at 8 rows ${rates.rows8GFlops.toFixed(1)} GFLOP/s, ` +
  `matmul_nt at ${PM} rows ${rates.matmul64GFlops.toFixed(1)} GFLOP/s.\n` +
  `${(weights / 1e6).toFixed(1)} M weights, ${(model.weightBytes / 1e6).toFixed(0)} MB: B = 1 read floor ${readFloorMs.toFixed(2)} ms a step ` +
  `(measured ${b1Ms.toFixed(2)}); compute floor a token ${computeFloorMs(rates.rows8GFlops).toFixed(2)} ms at the gemv-rows rate, ` +
  `${computeFloorMs(rates.matmul64GFlops).toFixed(2)} ms at the matmul_nt rate.\n` +
  `Ceiling of tokens/s at B ≥ 8 over B = 1 (B = 1 at its read floor / as measured): ${ceiling(rates.rows8GFlops)} at the gemv-rows rate, ` +
  `${ceiling(rates.matmul64GFlops)} at the matmul_nt rate.`;
console.log(`\n${probeLine}`);
if (JSON_FILE) {
  const all = existsSync(JSON_FILE) ? JSON.parse(readFileSync(JSON_FILE, 'utf8')) as typeof rows : [];
  const kept = all.filter((r) => r.threads !== model.threads || r.weights !== WEIGHTS || r.simd !== model.simd);
  writeFileSync(JSON_FILE, JSON.stringify([...kept, ...rows], null, 1) + '\n');
}
probe.pool?.dispose();
model.dispose();
