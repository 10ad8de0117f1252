// Session snapshots at 4k of context on the synthetic V2-Lite-attention-dims model (bench/decode.ts:
// 2 layers, hidden 2048, 16 heads, kv_lora_rank 512, rope 64): the snapshot's bytes against what an
// MHA cache of the same heads would take, and snapshot and restore time against the prefill that a
// restore replaces. Restore is timed up to a usable session (its first step not included).
//   node scripts/run-ts.mjs bench/snapshot.ts [--context 4096] [--runs 5] [--threads 1]
import { loadSyntheticModel } from './decode.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const CONTEXT = Number(arg('context', '4096'));
const RUNS = Number(arg('runs', '5'));
const THREADS = Number(arg('threads', '1'));
const V2_LITE_LAYERS = 27;

const model = await loadSyntheticModel(THREADS);
const ids = Array.from({ length: CONTEXT }, (_, i) => (i * 7919) % model.config.vocabSize);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const s = model.createSession({ contextLength: CONTEXT + 1 });
let t = performance.now();
s.prefill(ids);
const prefillMs = performance.now() - t;

const snapMs: number[] = [], restoreMs: number[] = [];
let bytes: Uint8Array = new Uint8Array(0);
for (let r = 0; r < RUNS; r++) {
  t = performance.now();
  bytes = s.snapshot();
  snapMs.push(performance.now() - t);
  t = performance.now();
  const restored = model.restoreSession(bytes);
  restoreMs.push(performance.now() - t);
  restored.dispose();
}
// The restored session continues as the original does (bit for bit), or the timing means nothing.
const restored = model.restoreSession(bytes);
const next = restored.step(3), original = s.step(3);
const same = next.length === original.length && next.every((x, i) => Object.is(x, original[i]));
restored.dispose();

const L = model.config.layers;
const mib = (b: number) => `${(b / 2 ** 20).toFixed(2)} MiB`;
const mha = model.mhaCacheBytesPerToken * CONTEXT;
const perLayerToken = model.kvCacheBytesPerToken / L;
console.log([
  `| context | layers | snapshot | rows alone | MHA cache, same heads | snapshot / MHA | at V2-Lite's ${V2_LITE_LAYERS} layers: MLA rows / MHA | snapshot ms | restore ms | prefill ms | prefill / restore | same next logits |`,
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
  `| ${CONTEXT} | ${L} | ${mib(bytes.length)} | ${mib(model.kvCacheBytesPerToken * CONTEXT)} | ${mib(mha)} | ${(bytes.length / mha).toFixed(3)} | ` +
  `${mib(perLayerToken * V2_LITE_LAYERS * CONTEXT)} / ${mib((mha / L) * V2_LITE_LAYERS)} | ${median(snapMs).toFixed(2)} | ${median(restoreMs).toFixed(2)} | ` +
  `${prefillMs.toFixed(0)} | ${(prefillMs / median(restoreMs)).toFixed(0)}× | ${same ? 'yes' : 'NO'} |`,
].join('\n'));
s.dispose();
model.dispose();
