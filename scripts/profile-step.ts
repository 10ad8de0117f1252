// npm run bench:profile [-- --model default|synthetic|<folder>] [-- --threads 1] [-- --context 512] [-- --steps 32] [-- --prefill]
//
// Where a decode step's time goes: every kernel call of `steps` steps after a prompt of `context`
// (+ 32 warm-up) tokens is timed, and the calls are summed by kind and shape, with what each streams (GB/s of the
// weights a projection reads) or computes (GFLOP/s of attention). The rest of the step (copies,
// JavaScript) is the difference. With --prefill, the same for a prefill of `context` tokens
// (`steps` times, after 2 untimed): projections then show GFLOP/s, and attention's GFLOP/s count
// every key of each block a query's keys come in, the causally masked ones too. Models: the built-in fortune-mla (default), the synthetic
// V2-Lite-dims model of the bench, or a checkpoint folder (e.g. the bench's end-to-end checkpoint,
// written to the temp folder by `npm run bench -- --e2e`).
// Timing every call costs time of its own, shown in "the rest": the header gives the untimed step.
import { loadSyntheticModel } from '../bench/decode.js';
import type { Matrix } from '../src/model/weights.js';
import { loadModel, type Model } from '../src/generate/model.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const which = arg('model', 'default');
const threads = Number(arg('threads', '1'));
const context = Number(arg('context', '512'));
const steps = Number(arg('steps', '64'));
const prefill = process.argv.includes('--prefill');

const model: Model = which === 'synthetic' ? await loadSyntheticModel(threads)
  : await loadModel(which === 'default' ? undefined : which, { threads });

interface Entry { calls: number; ms: number; work: number; unit: 'GB/s' | 'GFLOP/s' | '' }
const table = new Map<string, Entry>();
let timing = false;

/** Replace obj[name] by a timed call adding to table[label(args)]. */
function time(obj: Record<string, unknown>, name: string, label: (a: any[]) => [string, number, Entry['unit']]) {
  const f = (obj[name] as (...a: unknown[]) => unknown).bind(obj);
  obj[name] = (...a: any[]) => {
    if (!timing) return f(...a);
    const t0 = performance.now();
    const r = f(...a);
    const ms = performance.now() - t0;
    const [key, work, unit] = label(a);
    const e = table.get(key) ?? { calls: 0, ms: 0, work: 0, unit };
    e.calls++; e.ms += ms; e.work += work;
    table.set(key, e);
    return r;
  };
}

// Reaching into the decoder: its split calls, and the kernels it calls itself (a copy, so that the
// calls Parallel makes inside a split call are not counted twice).
const decoder = (model as unknown as { decoder: { par: Record<string, unknown>; k: Record<string, unknown> } }).decoder;
time(decoder.par, 'linear', (a) => {
  const w = a[2] as Matrix, T = a[5] as number;
  const key = `linear ${w.rows}×${w.cols}${w.panelCols < w.cols ? ` (${Math.ceil(w.cols / w.panelCols)} panels)` : ''}, ${T} row${T > 1 ? 's' : ''}`;
  return T > 1 ? [key, 2 * T * w.rows * w.cols, 'GFLOP/s'] : [key, w.rows * w.cols * 4, 'GB/s'];
});
time(decoder.par, 'matmul', (a) => {
  const [nt, , , , , , , m, k, n, batch = 1] = a;
  const key = `matmul_${nt ? 'nt' : 'nn'} ${batch} × ${m}×${k}×${n} (kv_b_proj per head)`;
  return m > 1 ? [key, 2 * batch * m * k * n, 'GFLOP/s'] : [key, batch * k * n * 4, 'GB/s'];
});
time(decoder.par, 'attention', (a) => {
  const [, count, , , , nq, , , dk1, dk2, , , , , , , dv, n] = a;
  return [`attention, ${count * nq} queries`, 2 * count * nq * n * (dk1 + dk2 + dv), 'GFLOP/s'];
});
const kernels = decoder.k;
const own: Record<string, unknown> = {};
for (let o: object | null = kernels; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
  for (const name of Object.keys(o)) if (!(name in own) && typeof kernels[name] === 'function') own[name] = (kernels[name] as () => unknown).bind(kernels);
}
for (const name of Object.keys(own)) time(own, name, () => [`${name}`, 0, '']);
decoder.k = own;

const vocab = model.config.vocabSize;
const WARM_UP = 32; // steps before anything is timed: V8 compiles the hot code meanwhile
const prompt = Array.from({ length: context }, (_, i) => (i * 7919 + 13) % vocab);
const session = model.createSession({ contextLength: context + (prefill ? 0 : WARM_UP + 2 * steps) });
const run = prefill ? () => {
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) { session.truncate(0); session.prefill(prompt); }
  return (performance.now() - t0) / steps;
} : () => {
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) session.step((i * 31) % vocab);
  return (performance.now() - t0) / steps;
};
if (prefill) for (let i = 0; i < 2; i++) { session.truncate(0); session.prefill(prompt); }
else {
  session.prefill(prompt);
  for (let i = 0; i < WARM_UP; i++) session.step(i % vocab);
}
const untimedMs = run();
timing = true;
const stepMs = run();
timing = false;

const rows = [...table].sort((a, b) => b[1].ms - a[1].ms);
const counted = rows.reduce((s, [, e]) => s + e.ms, 0) / steps;
const what = prefill ? `prefill of ${context} tokens: ${untimedMs.toFixed(3)} ms over ${steps} prefills`
  : `decode steps after ${context} + ${WARM_UP} tokens: ${untimedMs.toFixed(3)} ms a step over ${steps} steps`;
const per = prefill ? 'prefill' : 'step';
console.log(`${which} model, ${model.threads} thread${model.threads > 1 ? 's' : ''}, ${model.simd} build, ${what}, then ${stepMs.toFixed(3)} ms with every call timed (below)\n`);
console.log(`| call | calls a ${per} | ms a ${per} | share | rate |\n|---|---|---|---|---|`);
for (const [key, e] of rows) {
  const ms = e.ms / steps;
  if (ms < 0.0005) continue;
  const rate = e.unit ? `${(e.work / e.ms / 1e6).toFixed(1)} ${e.unit}` : '';
  console.log(`| ${key} | ${+(e.calls / steps).toFixed(2)} | ${ms.toFixed(3)} | ${(100 * ms / stepMs).toFixed(1)}% | ${rate} |`);
}
console.log(`| the rest (copies, JavaScript) | | ${(stepMs - counted).toFixed(3)} | ${(100 * (stepMs - counted) / stepMs).toFixed(1)}% | |`);
session.dispose();
model.dispose();
