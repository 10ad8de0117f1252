// node scripts/run-ts.mjs bench/big-model.ts [--threads 1,2] [--steps N] [--file F.gguf]
//
// The largest model that fits WebAssembly's 4 GiB since narrow weights: MiniCPM3-4B's dims as a
// DeepseekV2 model (bench/mla-configs.ts) with random weights, written once as a Q4_0 GGUF (so the
// int4 blocks load as stored), then loaded through loadModel and decoded. Prints load time, the
// WebAssembly memory and the process RSS, and decode tokens/s; writes bench/results/big-model.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, renameSync, writeSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { ggufChunks, loadModel, parseConfig, planGguf } from '../src/internal.js';
import { randomSource } from './decode.js';
import { MINICPM3_4B } from './mla-configs.js';

const { values: args } = parseArgs({ options: {
  threads: { type: 'string', default: '1,2' },
  steps: { type: 'string', default: '16' },
  prompt: { type: 'string', default: '32' },
  file: { type: 'string', default: join(tmpdir(), 'mla-wasm-bench', 'minicpm3-4b-dims-q4_0.gguf') },
  child: { type: 'boolean', default: false },
} });
const threadCounts = args.threads.split(',').map(Number);
const steps = Number(args.steps), promptLength = Number(args.prompt);
const config = parseConfig(MINICPM3_4B.config);
const GiB = 2 ** 30;

if (!args.child && !existsSync(args.file)) {
  // Written once: every matrix Q4_0 except what the writer keeps wider (kv_b_proj, rows not a multiple of 32).
  mkdirSync(dirname(args.file), { recursive: true });
  const plan = planGguf(config, randomSource(config), null, { type: 'Q4_0', name: 'minicpm3-4b-dims' });
  const tmp = `${args.file}.${process.pid}.partial`, fd = openSync(tmp, 'w');
  const t0 = performance.now();
  let at = 0, shown = -1;
  for (const chunk of ggufChunks(plan)) {
    for (let done = 0; done < chunk.length;) done += writeSync(fd, chunk, done, chunk.length - done);
    at += chunk.length;
    const percent = Math.floor((100 * at) / plan.size);
    if (percent !== shown) process.stderr.write(`\rwriting ${args.file}: ${(shown = percent)}%`);
  }
  closeSync(fd);
  renameSync(tmp, args.file);
  process.stderr.write(` (${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
}

interface Row { threads: number; loadS: number; wasmGiB: number; rssGiB: number; prefillTps: number; decodeTps: number; msPerToken: number }

/** One thread count, in this process (started by the loop below, so each RSS is its own). */
async function measure(threads: number): Promise<Row> {
  const ids = Array.from({ length: promptLength }, (_, i) => (i * 7919) % config.vocabSize);
  const t0 = performance.now();
  const model = await loadModel(args.file, { threads, weights: 'auto' });
  const loadS = (performance.now() - t0) / 1000;
  const session = model.createSession({ contextLength: 1024 });
  const t1 = performance.now();
  let logits = session.prefill(ids);
  const prefillS = (performance.now() - t1) / 1000;
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    const t = performance.now();
    logits = session.step(best);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const median = times[times.length >> 1];
  const row = { threads: model.threads, loadS, wasmGiB: model.memoryBytes / GiB, rssGiB: process.memoryUsage().rss / GiB,
    prefillTps: promptLength / prefillS, decodeTps: 1000 / median, msPerToken: median };
  model.dispose();
  return row;
}

if (args.child) {
  console.log(JSON.stringify(await measure(threadCounts[0])));
  process.exit(0);
}
const rows: Row[] = [];
for (const threads of threadCounts) {
  const child = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', process.argv[1], '--child', '--threads', String(threads), '--steps', args.steps,
    '--prompt', args.prompt, '--file', args.file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (child.status !== 0) throw new Error(`the ${threads}-thread run failed (status ${child.status})`);
  const row = JSON.parse(child.stdout.trim().split('\n').pop()!) as Row;
  console.log(JSON.stringify(row));
  rows.push(row);
}

const f = (x: number, d = 2) => x.toFixed(d);
const lines = [
  '# The largest model that fits: MiniCPM3-4B dims at int4',
  '',
  `\`node scripts/run-ts.mjs bench/big-model.ts --threads ${args.threads} --steps ${steps}\`, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC,`,
  `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.versions.node}; 1-minute load average ${f(loadavg()[0])} at the end`,
  '(the machine is shared: other jobs ran beside this one).',
  '',
  `${MINICPM3_4B.name}'s dims (${MINICPM3_4B.note}): 62 layers, hidden 2560, 40 heads, q_lora_rank 768, kv_lora_rank 256 + rope 32,`,
  `MLP 6400, vocab 73448, tied embeddings; random weights written once as a Q4_0 GGUF (kv_b_proj stays F32, as the writer keeps it),`,
  `then \`loadModel(file, { threads })\`: the Q4_0 blocks load as int4 without requantising. Prompt of ${promptLength} tokens, then ${steps}`,
  'greedy steps; the median step counts. Each thread count runs in a process of its own.',
  '',
  '| threads | load, s | WebAssembly memory, GiB | process RSS, GiB | prefill tokens/s | decode ms/token | decode tokens/s |',
  '|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.threads} | ${f(r.loadS, 1)} | ${f(r.wasmGiB)} | ${f(r.rssGiB)} | ${f(r.prefillTps, 1)} | ${f(r.msPerToken, 1)} | ${f(r.decodeTps)} |`),
];
writeFileSync('bench/results/big-model.md', lines.join('\n') + '\n');
console.log(lines.join('\n'));
