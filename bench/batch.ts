// Batched decode across sessions (model.stepBatch) on the synthetic V2-Lite-attention-dims model
// (bench/decode.ts: 2 layers, hidden 2048, 16 heads, kv_lora_rank 512): aggregate tokens/s and the
// time of one step (each session's per-token latency) at B sessions, each at --context positions.
// Batch sizes are interleaved round by round; medians over the rounds.
//   node scripts/run-ts.mjs bench/batch.ts [--threads 1] [--rounds 5] [--steps 8] [--context 256]
import { loadSyntheticModel } from './decode.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const THREADS = Number(arg('threads', '1'));
const ROUNDS = Number(arg('rounds', '5'));
const STEPS = Number(arg('steps', '8'));
const CONTEXT = Number(arg('context', '256'));
const SIZES = [1, 2, 4, 8, 16];

const model = await loadSyntheticModel(THREADS);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// Sessions whose first CONTEXT rows are taken as they are (skipTo): attention reads CONTEXT keys.
const sessions = SIZES.map((B) => Array.from({ length: B }, () => model.createSession({ contextLength: CONTEXT + STEPS + 1 })));
const stepMs = SIZES.map(() => [] as number[]);
for (let r = 0; r < ROUNDS; r++) {
  SIZES.forEach((B, k) => {
    const batch = sessions[k];
    for (const s of batch) s.skipTo(CONTEXT);
    model.stepBatch(batch.map((session, i) => ({ session, id: i }))); // warm
    const t = performance.now();
    for (let n = 0; n < STEPS - 1; n++) model.stepBatch(batch.map((session, i) => ({ session, id: (n * 31 + i) % 1000 })));
    stepMs[k].push((performance.now() - t) / (STEPS - 1));
  });
}
const base = 1000 / median(stepMs[0]);
console.log(`threads ${model.threads}, ${model.simd} build, context ${CONTEXT}, ${ROUNDS} rounds × ${STEPS - 1} timed steps\n`);
console.log('| B | ms per step (per-token latency) | aggregate tokens/s | × B=1 |\n|---|---|---|---|');
SIZES.forEach((B, k) => {
  const ms = median(stepMs[k]), tps = (1000 * B) / ms;
  console.log(`| ${B} | ${ms.toFixed(2)} | ${tps.toFixed(1)} | ${(tps / base).toFixed(2)} |`);
});
model.dispose();
