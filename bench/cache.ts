// npm run bench:cache [-- --context 16384] [-- --rounds 6] [-- --threads 1] [-- --simd relaxed|simd]
//
// Decode with a narrow latent cache against the f32 cache and against MHA, at long context, on the
// decode bench's synthetic model (DeepSeek-V2-Lite attention dims, 2 layers, bench/decode.ts). All
// sides are loaded at once and timed in turn, a few steps each per round, so a busy neighbour
// slows every side alike; the ratios are of medians over all rounds of the same run. At one thread
// they compare CPU time (process.cpuUsage), which a neighbour's time slices do not inflate; wall
// time is shown beside it. The caches are filled with arbitrary rows (a step's cost does not
// depend on the values).
import { type CacheFormat, type Model, type SimdBuild } from '../src/internal.js';
import { syntheticModel, VARIANTS } from './decode.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const context = Number(arg('context', '16384'));
const rounds = Number(arg('rounds', '6'));
const threads = Number(arg('threads', '1'));
const simd = arg('simd', 'relaxed') as SimdBuild;
const STEPS = 4;

const mla = VARIANTS.find((v) => v.name === 'MLA absorbed')!, mha = VARIANTS.find((v) => v.name === 'MHA')!;
const mlaModel = await syntheticModel(mla.attention, { simd, threads });
const mhaModel = await syntheticModel(mha.attention, { simd, threads });

interface Side { name: string; model: Model; cache: CacheFormat; step: () => void; bytes: number; times: number[]; cpu: number[] }
function side(name: string, model: Model, cache: CacheFormat): Side {
  const s = model.createSession({ contextLength: context + 1, cache });
  // Any bytes in 0x30…0x3F read as finite, small f32/bf16 (scales, k^R) and as int8/int4 codes.
  const mem = s.kvCache.bytesView();
  for (let i = 0; i < mem.length; i++) mem[i] = 0x30 + ((i * 7) & 15);
  const out = new Float32Array(model.config.vocabSize);
  return { name, model, cache, step: () => { s.skipTo(context); s.step(1, { out }); }, bytes: s.kvCacheBytesPerToken * context, times: [], cpu: [] };
}
const sides = [side('MLA, f32 cache', mlaModel, 'f32'), side('MLA, bf16 cache', mlaModel, 'bf16'), side('MLA, int8 cache', mlaModel, 'int8'),
  side('MLA, int4 cache', mlaModel, 'int4'), side('MHA, f32 cache', mhaModel, 'f32')];

for (const s of sides) for (let i = 0; i < 3; i++) s.step(); // warm-up (V8 tier-up)
for (let r = 0; r < rounds; r++) {
  for (const s of sides) {
    for (let i = 0; i < STEPS; i++) {
      const c0 = process.cpuUsage(), t0 = performance.now();
      s.step();
      s.times.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      s.cpu.push((c.user + c.system) / 1000);
    }
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
// Worker threads' CPU time would count too, so with threads only the wall time compares.
const timed = (s: Side) => median(threads === 1 ? s.cpu : s.times);
const base = timed(sides[0]), mhaMs = timed(sides[4]);
console.log(`decode at ${context} context, V2-Lite attention dims, 2 layers, ${simd} build, ${threads} thread(s); ` +
  `${rounds} rounds × ${STEPS} steps each, interleaved; medians; ratios of ${threads === 1 ? 'CPU' : 'wall'} time`);
console.log('| cache | KV cache, MiB | ms/token | CPU ms/token | × f32 cache | × MHA |');
console.log('|---|---|---|---|---|---|');
for (const s of sides) {
  const ms = timed(s);
  console.log(`| ${s.name} | ${(s.bytes / 2 ** 20).toFixed(1)} | ${median(s.times).toFixed(2)} | ${median(s.cpu).toFixed(2)} | ${(base / ms).toFixed(2)} | ${(mhaMs / ms).toFixed(2)} |`);
}
mlaModel.dispose();
mhaModel.dispose();
