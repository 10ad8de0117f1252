// Prefill (pp512) of the synthetic V2-Lite-dims model (bench/decode.ts) with each weights format
// against f32, in both builds, in one process: every (build, format) prefills once per round, in
// turn, so a burst of someone else's work spoils one sample of each; each figure is the median of
// the rounds, "× f32" the f32 model's time over this one's, same build and run.
//
//   node scripts/run-ts.mjs bench/quant-prefill.ts [--rounds 5] [--threads 1] [--weights f32,int8,int4,bf16] [--tokens 512]
//
// Writes nothing: the table goes to stdout (copied into results/quant-prefill.md by hand, with
// the machine's load).
import { loadavg } from 'node:os';
import type { Model, SimdBuild, WeightsOption } from '../src/internal.js';
import { syntheticModel, VARIANTS } from './decode.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const ROUNDS = Number(arg('rounds', '5'));
const THREADS = Number(arg('threads', '1'));
const TOKENS = Number(arg('tokens', '512'));
const FORMATS = arg('weights', 'f32,int8,int4,bf16').split(',') as Exclude<WeightsOption, 'auto'>[];
const BUILDS = arg('builds', 'simd,relaxed').split(',') as SimdBuild[];

interface Case { build: SimdBuild; format: string; model: Model; prefill: () => void; ms: number[] }

const cases: Case[] = [];
for (const build of BUILDS) {
  for (const format of FORMATS) {
    const model = await syntheticModel(VARIANTS[0].attention, { simd: build, threads: THREADS, weights: format });
    const c = model.config;
    const s = model.createSession({ contextLength: TOKENS + 1 });
    const prompt = Array.from({ length: TOKENS }, (_, i) => (i * 7919 + 13) % c.vocabSize);
    const out = new Float32Array(c.vocabSize);
    const prefill = () => { s.truncate(0); s.prefill(prompt, { out }); };
    prefill(); // warm-up
    cases.push({ build, format, model, prefill, ms: [] });
  }
}
const load0 = loadavg();
for (let r = 0; r < ROUNDS; r++) {
  for (const c of cases) {
    const t0 = performance.now();
    c.prefill();
    c.ms.push(performance.now() - t0);
  }
}
const load1 = loadavg();
const median = (x: number[]) => [...x].sort((a, b) => a - b)[x.length >> 1];
console.log(`pp${TOKENS}, ${THREADS} thread(s), ${ROUNDS} rounds; load average before ${load0.map((v) => v.toFixed(1)).join(' ')}, after ${load1.map((v) => v.toFixed(1)).join(' ')}`);
console.log('| build | weights | ms (median) | tokens/s | × f32 | min–max ms |');
console.log('| --- | --- | --- | --- | --- | --- |');
for (const c of cases) {
  const f32 = cases.find((x) => x.build === c.build && x.format === 'f32');
  const ms = median(c.ms);
  const ratio = f32 ? (median(f32.ms) / ms).toFixed(2) : '–';
  console.log(`| ${c.build} | ${c.format} | ${ms.toFixed(0)} | ${(TOKENS / ms * 1000).toFixed(0)} | ${ratio} | ${Math.min(...c.ms).toFixed(0)}–${Math.max(...c.ms).toFixed(0)} |`);
}
for (const c of cases) c.model.dispose();
