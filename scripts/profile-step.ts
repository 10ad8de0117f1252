// npm run bench:profile [-- --model default|synthetic|<folder>] [-- --weights f32|bf16|int8|int4] [-- --simd simd|relaxed] [-- --threads 1] [-- --context 512] [-- --steps 32] [-- --prefill] [-- --batch B]
//
// Where a decode step's time goes: every kernel call of `steps` steps after a prompt of `context`
// (+ 32 warm-up) tokens is timed, and the calls are summed by kind and shape, with what each streams (GB/s of the
// weights a projection reads) or computes (GFLOP/s of attention). The rest of the step (copies,
// JavaScript) is the difference. With --prefill, the same for a prefill of `context` tokens
// (`steps` times, after 2 untimed): projections then show GFLOP/s, and attention's GFLOP/s count
// every key of each block a query's keys come in, the causally masked ones too. Models: the built-in fortune-mla (default), the synthetic
// V2-Lite-dims model of the bench, or a checkpoint folder (e.g. the bench's end-to-end checkpoint,
// written to the temp folder by `npm run bench -- --e2e`).
// With --batch B, each step is one model.stepBatch over B sessions at the same position.
// Timing every call costs time of its own, shown in "the rest": the header gives the untimed step.
// The calls are timed by the model's kernel door (Ops), which tells an observer about each.
import { loadSyntheticModel } from '../bench/decode.js';
import { loadModel, matrixBytes, type Model, type OpEvent, type SimdBuild, type WeightsOption } from '../src/internal.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const which = arg('model', 'default');
const threads = Number(arg('threads', '1'));
const context = Number(arg('context', '512'));
const steps = Number(arg('steps', '64'));
const prefill = process.argv.includes('--prefill');
const weights = arg('weights', 'auto') as WeightsOption;
const simd = arg('simd', 'auto') as SimdBuild | 'auto';
const batch = Number(arg('batch', '1'));

const model: Model = which === 'synthetic' ? await loadSyntheticModel(threads)
  : await loadModel(which === 'default' ? undefined : which, { threads, weights, simd });

interface Entry { calls: number; ms: number; work: number; unit: 'GB/s' | 'GFLOP/s' | '' }
const table = new Map<string, Entry>();

/** What an op is (its table row) and what it did: bytes streamed (GEMV) or flops. */
function label(e: OpEvent): [string, number, Entry['unit']] {
  switch (e.op) {
    case 'linear': {
      const { w, rows: T } = e.call;
      if (w.format === 'mixed') throw new Error('a mixed matrix runs as its parts, each its own linear call');
      const key = `linear ${w.format} ${w.rows}×${w.cols}${w.panelCols < w.cols ? ` (${Math.ceil(w.cols / w.panelCols)} panels)` : ''}, ${T} row${T > 1 ? 's' : ''}`;
      return T > 1 ? [key, 2 * T * w.rows * w.cols, 'GFLOP/s'] : [key, matrixBytes(w.format, w.rows, w.cols), 'GB/s'];
    }
    case 'matmul': {
      const { nt, m, k, n, batch = 1 } = e.call;
      const key = `matmul_${nt ? 'nt' : 'nn'} ${batch} × ${m}×${k}×${n} (kv_b_proj per head)`;
      return m > 1 ? [key, 2 * batch * m * k * n, 'GFLOP/s'] : [key, batch * k * n * 4, 'GB/s'];
    }
    case 'attention': {
      const { items, queries, keys, sharedKeys, values } = e.call;
      const nq = items * queries.count;
      return [`attention, ${nq} queries`, 2 * nq * keys.count * (keys.dim + (sharedKeys?.dim ?? 0) + values.dim), 'GFLOP/s'];
    }
    default:
      return [e.op, 0, ''];
  }
}

/** Add an op's time to its row. */
function record(e: OpEvent): void {
  const [key, work, unit] = label(e);
  const entry = table.get(key) ?? { calls: 0, ms: 0, work: 0, unit };
  entry.calls++; entry.ms += e.ms; entry.work += work;
  table.set(key, entry);
}

const vocab = model.config.vocabSize;
const WARM_UP = 32; // steps before anything is timed: V8 compiles the hot code meanwhile
const prompt = Array.from({ length: context }, (_, i) => (i * 7919 + 13) % vocab);
const sessions = Array.from({ length: batch }, () => model.createSession({ contextLength: context + (prefill ? 0 : WARM_UP + 2 * steps) }));
const session = sessions[0];
const decode = (id: number) => {
  if (batch === 1) session.step(id);
  else model.stepBatch(sessions.map((s, b) => ({ session: s, id: (id + b) % vocab })));
};
const run = prefill ? () => {
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) { session.truncate(0); session.prefill(prompt); }
  return (performance.now() - t0) / steps;
} : () => {
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) decode((i * 31) % vocab);
  return (performance.now() - t0) / steps;
};
if (prefill) for (let i = 0; i < 2; i++) { session.truncate(0); session.prefill(prompt); }
else {
  for (const s of sessions) s.prefill(prompt);
  for (let i = 0; i < WARM_UP; i++) decode(i % vocab);
}
const untimedMs = run();
model.ops.observer = record;
const stepMs = run();
model.ops.observer = null;

const rows = [...table].sort((a, b) => b[1].ms - a[1].ms);
const counted = rows.reduce((s, [, e]) => s + e.ms, 0) / steps;
const what = prefill ? `prefill of ${context} tokens: ${untimedMs.toFixed(3)} ms over ${steps} prefills`
  : `decode steps${batch > 1 ? ` of ${batch} sessions (stepBatch)` : ''} after ${context} + ${WARM_UP} tokens: ${untimedMs.toFixed(3)} ms a step over ${steps} steps`;
const per = prefill ? 'prefill' : 'step';
console.log(`${which} model, ${model.weightFormat} weights, ${model.threads} thread${model.threads > 1 ? 's' : ''}, ${model.simd} build, ${what}, then ${stepMs.toFixed(3)} ms with every call timed (below)\n`);
console.log(`| call | calls a ${per} | ms a ${per} | share | rate |\n|---|---|---|---|---|`);
for (const [key, e] of rows) {
  const ms = e.ms / steps;
  if (ms < 0.0005) continue;
  const rate = e.unit ? `${(e.work / e.ms / 1e6).toFixed(1)} ${e.unit}` : '';
  console.log(`| ${key} | ${+(e.calls / steps).toFixed(2)} | ${ms.toFixed(3)} | ${(100 * ms / stepMs).toFixed(1)}% | ${rate} |`);
}
console.log(`| the rest (copies, JavaScript) | | ${(stepMs - counted).toFixed(3)} | ${(100 * (stepMs - counted) / stepMs).toFixed(1)}% | |`);
for (const s of sessions) s.dispose();
model.dispose();
