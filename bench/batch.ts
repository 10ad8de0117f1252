// Batched decode across sessions (model.stepBatch) on the synthetic V2-Lite-attention-dims model
// (bench/decode.ts: 2 layers, hidden 2048, 16 heads, kv_lora_rank 512): aggregate tokens/s and the
// time of one step (each session's per-token latency) at B sessions, each at --context positions.
// Batch sizes are interleaved round by round; medians over the rounds.
//   node scripts/run-ts.mjs bench/batch.ts [--threads 1] [--weights f32|bf16|int8|int4] [--rounds 5] [--steps 8] [--context 256]
//     [--json bench/results/batch.json]   (adds this run's rows to that file, for bench/batch-plot.ts)
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import type { WeightsOption } from '../src/internal.js';
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
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// Sessions whose first CONTEXT rows are taken as they are (skipTo): attention reads CONTEXT keys.
const sessions = SIZES.map((B) => Array.from({ length: B }, () => model.createSession({ contextLength: CONTEXT + STEPS + 1 })));
const stepMs = SIZES.map(() => [] as number[]);
// The same steps without the multi-row GEMV kernels (rows ≥ 2 on matvec per row / matmul_nt), interleaved.
const withoutMs = SIZES.map(() => [] as number[]);
const rowsMax = model.ops.rowsMax;
for (let r = 0; r < ROUNDS; r++) {
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
  return { threads: model.threads, weights: WEIGHTS, simd: model.simd, B, msPerStep: ms, tokensPerSecond: tps, msWithout: before, load };
});
if (JSON_FILE) {
  const all = existsSync(JSON_FILE) ? JSON.parse(readFileSync(JSON_FILE, 'utf8')) as typeof rows : [];
  const kept = all.filter((r) => r.threads !== model.threads || r.weights !== WEIGHTS || r.simd !== model.simd);
  writeFileSync(JSON_FILE, JSON.stringify([...kept, ...rows], null, 1) + '\n');
}
model.dispose();
