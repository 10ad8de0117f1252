// Decode time of one model as llama.cpp's Q4_K_M and as its Q5_K_M (or the mixes --mixes names:
// Q3_K_M, IQ4_XS, IQ4_NL …, the first the baseline), in one process, rounds interleaved: a Llama (hidden 2048, 16 heads, 4 KV heads of 128, MLP 5632, 2 layers, the
// built-in tokenizer's 264 tokens; every matrix a multiple of 256 wide, so no tensor falls back
// to a type we do not read), written F32 by our writer, quantised by llama.cpp's own quantizer
// (test/reference/llama-quantize.py: the libllama node-llama-cpp ships, through ctypes, with
// llama-quantize's default mixes), loaded with weights 'auto' (K-quants kept as stored; Q3_K,
// IQ4_XS, IQ4_NL repacked into q6k / q8).
//
//   node scripts/run-ts.mjs bench/kquant-decode.ts [--rounds 7] [--steps 8] [--threads 1] [--simd relaxed] [--mixes Q4_K_M,Q5_K_M]
//
// A step is timed in this process's CPU time (one thread: the kernels run on it alone), the
// median of a round's steps, then the median over rounds; the two models take turns each round,
// so the machine's load falls on both alike. The files are kept in the temp folder between runs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { expectedTensors, loadModel, parseConfig, quantizeToFile, type Model, type SimdBuild } from '../src/internal.js';
import { tensorValues } from './e2e/checkpoint.js';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const ROUNDS = Number(arg('rounds', '7')), STEPS = Number(arg('steps', '8')), THREADS = Number(arg('threads', '1'));
const SIMD = arg('simd', 'relaxed') as SimdBuild;

const CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 264, hidden_size: 2048, intermediate_size: 5632,
  num_hidden_layers: 2, num_attention_heads: 16, num_key_value_heads: 4, head_dim: 128, rms_norm_eps: 1e-6, rope_theta: 10000,
  max_position_embeddings: 4096, rope_scaling: null, tie_word_embeddings: false, attention_bias: false, mlp_bias: false,
  bos_token_id: 256, eos_token_id: 257, torch_dtype: 'float32',
};
/** llama.cpp's file types (llama_ftype). */
const FTYPES: Record<string, number> = { Q3_K_M: 12, Q4_K_M: 15, Q5_K_M: 17, IQ4_NL: 25, IQ4_XS: 30 };
const MIXES = arg('mixes', 'Q4_K_M,Q5_K_M').split(',').map((name) => {
  if (!(name in FTYPES)) throw new Error(`--mixes: ${name} is not one of ${Object.keys(FTYPES).join(', ')}`);
  return [name, FTYPES[name]] as const;
});
const DIR = path.join(os.tmpdir(), 'mla-wasm-bench', 'kquant-decode-llama-2048-2l-v1');

function libDir(): string {
  const main = createRequire(import.meta.url).resolve('node-llama-cpp');
  return path.join(main.slice(0, main.lastIndexOf('/node-llama-cpp/')), '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64');
}

async function files(): Promise<Record<string, string>> {
  mkdirSync(DIR, { recursive: true });
  const f32 = path.join(DIR, 'F32.gguf');
  if (!existsSync(f32)) {
    console.log(`writing ${f32} …`);
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, shape] of expectedTensors(parseConfig(CONFIG))) tensors[name] = { shape, data: tensorValues(name, shape) };
    const fortune = (n: string) => JSON.parse(readFileSync(path.join(process.cwd(), 'models', 'fortune-mla', n), 'utf8'));
    await quantizeToFile({ config: CONFIG, tensors, tokenizerJson: fortune('tokenizer.json'), tokenizerConfig: fortune('tokenizer_config.json') } as never,
      f32, { type: 'F32' });
  }
  const out: Record<string, string> = {};
  for (const [name, ftype] of MIXES) {
    out[name] = path.join(DIR, `${name}.gguf`);
    if (existsSync(out[name])) continue;
    console.log(`quantising ${out[name]} with llama.cpp …`);
    const r = spawnSync('python3', ['test/reference/llama-quantize.py', libDir(), f32, out[name], String(ftype), 'mixed'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`llama-quantize.py failed: ${r.stderr.slice(-2000)}`);
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const paths = await files();
const models: [string, Model][] = [];
for (const [name] of MIXES) models.push([name, await loadModel(paths[name], { threads: THREADS, simd: SIMD })]);
const prompt = Array.from({ length: 32 }, (_, i) => (i * 37 + 11) % 256);
console.log(`node ${process.version}, ${SIMD} build, ${THREADS} thread(s), ${ROUNDS} rounds × ${STEPS} decode steps after a ${prompt.length}-token prompt`);
for (const [name, m] of models) {
  const formats = new Map<string, number>();
  const w = (m as unknown as { decoder: { w: { embed: { format: string }; lmHead: { format: string }; layers: Record<string, { format?: string } | unknown>[] } } }).decoder.w;
  type M = { format: string; parts?: M[] };
  const all = [w.embed, w.lmHead, ...w.layers.flatMap((l) => Object.values(l).filter((x): x is M => !!x && typeof x === 'object' && 'format' in (x as object)))] as M[];
  for (const x of all.flatMap((m) => m.parts ?? [m])) formats.set(x.format, (formats.get(x.format) ?? 0) + 1);
  console.log(`${name}: weights ${(m.weightBytes / 2 ** 20).toFixed(1)} MiB; matrices ${[...formats].map(([f, n]) => `${n} ${f}`).join(', ')}`);
}

const samples = new Map<string, number[]>(models.map(([n]) => [n, []]));
const sessions = models.map(([n, m]) => {
  const s = m.createSession({ contextLength: prompt.length + ROUNDS * STEPS + STEPS + 1 });
  s.prefill(prompt);
  return [n, s] as const;
});
for (const [, s] of sessions) for (let i = 0; i < 2; i++) s.step(i); // past Liftoff
for (let round = 0; round < ROUNDS; round++) {
  for (const [n, s] of sessions) {
    const t: number[] = [];
    for (let i = 0; i < STEPS; i++) {
      const c0 = process.cpuUsage();
      s.step((round * STEPS + i) % 256);
      const used = process.cpuUsage(c0);
      t.push((used.user + used.system) / 1000);
    }
    samples.get(n)!.push(median(t));
  }
}
const ms = new Map([...samples].map(([n, xs]) => [n, median(xs)]));
for (const [n, xs] of samples) console.log(`${n}: ${ms.get(n)!.toFixed(2)} ms/token CPU (rounds: ${xs.map((x) => x.toFixed(2)).join(' ')})`);
const [base] = MIXES[0];
for (const [n] of MIXES.slice(1)) console.log(`${n} / ${base} time: ${(ms.get(n)! / ms.get(base)!).toFixed(3)}`);
for (const [, s] of sessions) s.dispose();
for (const [, m] of models) m.dispose();
