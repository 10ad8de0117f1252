// node scripts/run-ts.mjs bench/llama-peers.ts [--types q8_0,q4_0] [--threads 1,2] [--rounds 4] [--steps 8]
//
// Ours against native llama.cpp (node-llama-cpp's prebuilt CPU binary) on the same GGUF files:
// the e2e bench's 2-layer V2-Lite-dims checkpoint (bench/e2e/checkpoint.ts) with query compression
// (q_lora_rank 1536, DeepSeek-V2's), written by our GGUF writer as Q8_0 and Q4_0. Query
// compression because llama.cpp reads a deepseek2 file without q_lora_rank only at 26 or 27
// layers (V2-Lite's count). llama-bench's tests: pp512 (a 512-token prompt from an empty cache)
// and tg at 512 of context (single decode steps that compute the logits), at 1 and 2 threads.
// Each side runs in a process of its own; the runner asks them in turn for one round (a pp512 and
// `steps` decode steps), `rounds` times, so a busy neighbour hurts every side alike. Before
// timing, the greedy token after the prompt is compared (information, not a gate: both quantise
// the activations to int8 per block, each its own way).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { loadModel } from '../src/internal.js';
import { CONFIG, CONTEXT, ggufFile, median, prompt, type GgufType } from './llama-files.js';

const TYPES: GgufType[] = ['q8_0', 'q4_0'];
type Side = 'mla-wasm' | 'llama.cpp';
interface Spec { side: Side; type: GgufType; threads: number; file: string; steps: number }
interface Ready { ok: boolean; version?: string; note?: string; loadMs?: number; firstToken?: number; threads?: number; top?: number[] }
interface Round { ppMs: number; tgMs: number[] }

const argv = process.argv.slice(2);
const arg = (name: string) => { const i = argv.indexOf(name); return i >= 0 ? argv[i + 1] : undefined; };

// ---- the worker: one side in its own process --------------------------------------------------

async function oursWorker(spec: Spec): Promise<{ ready: Ready; round: () => Promise<Round> }> {
  const t0 = performance.now();
  const model = await loadModel(spec.file, { simd: 'relaxed', threads: spec.threads, weights: 'auto' });
  const loadMs = performance.now() - t0;
  if (model.threads !== spec.threads) return { ready: { ok: false, note: `${model.threads} threads, not ${spec.threads}` }, round: async () => ({ ppMs: 0, tgMs: [] }) };
  const session = model.createSession({ contextLength: CONTEXT + 64 });
  const ids = prompt();
  const logits = session.prefill(ids); // the logits after the 512 tokens llama.cpp is given
  const top = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, 20);
  const firstToken = top[0];
  const out = new Float32Array(model.config.vocabSize);
  return {
    ready: { ok: true, version: 'relaxed build', loadMs, firstToken, threads: model.threads, top },
    round: async () => {
      session.truncate(0);
      const t = performance.now();
      session.prefill(ids);
      const ppMs = performance.now() - t;
      const tgMs: number[] = [];
      for (let i = 0; i < spec.steps; i++) {
        const s = performance.now();
        session.step(3 + i, { out });
        tgMs.push(performance.now() - s);
      }
      return { ppMs, tgMs };
    },
  };
}

async function llamaWorker(spec: Spec): Promise<{ ready: Ready; round: () => Promise<Round> }> {
  // By a name in a variable, so that the bundle leaves the package (and its native binaries) to Node.
  const pkg = 'node-llama-cpp';
  const nlc: typeof import('node-llama-cpp') = await import(pkg);
  const version = JSON.parse(readFileSync(path.join(path.dirname(new URL(import.meta.resolve(pkg)).pathname), '..', 'package.json'), 'utf8')).version;
  const llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: spec.file });
  // batch 512: the prompt in one ubatch as llama-bench's pp512; flash attention off (llama-bench's default on CPU then)
  const ctx = await model.createContext({ contextSize: CONTEXT + 64, threads: spec.threads, batchSize: CONTEXT, flashAttention: false });
  const loadMs = performance.now() - t0;
  const seq = ctx.getSequence();
  const ids = prompt();
  /** One decode step that computes the logits and picks the greedy token (as a decode loop must). */
  const step = async (id: number) => {
    const r = await seq.controlledEvaluate([[id, { generateNext: { token: true } }]] as never) as { next?: { token?: number } }[];
    return r[0]?.next?.token ?? -1;
  };
  await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, CONTEXT - 1) as never);
  const firstToken = await step(ids[CONTEXT - 1]);
  return {
    ready: { ok: true, version: `node-llama-cpp ${version}`, loadMs, firstToken, threads: ctx.currentThreads ?? spec.threads },
    round: async () => {
      await seq.clearHistory();
      const t = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(ids as never);
      const ppMs = performance.now() - t;
      const tgMs: number[] = [];
      for (let i = 0; i < spec.steps; i++) {
        const s = performance.now();
        await step(3 + i);
        tgMs.push(performance.now() - s);
      }
      return { ppMs, tgMs };
    },
  };
}

async function worker(spec: Spec): Promise<void> {
  let side;
  try {
    side = spec.side === 'mla-wasm' ? await oursWorker(spec) : await llamaWorker(spec);
  } catch (e) {
    console.log(JSON.stringify({ ok: false, note: String((e as Error)?.message ?? e).split('\n')[0].slice(0, 300) }));
    return;
  }
  console.log(JSON.stringify(side.ready));
  if (!side.ready.ok) return;
  for await (const line of createInterface({ input: process.stdin })) {
    if (line !== 'round') break;
    console.log(JSON.stringify(await side.round()));
  }
  process.exit(0);
}

// ---- the runner ---------------------------------------------------------------------------------

class Child {
  private lines: string[] = [];
  private waiting: ((l: string | null) => void) | null = null;
  readonly proc: ChildProcess;
  constructor(spec: Spec) {
    this.proc = spawn(process.execPath, ['--experimental-wasm-relaxed-simd', process.argv[1], '--worker', JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => {
      if (!l.startsWith('{')) return;
      if (this.waiting) { const w = this.waiting; this.waiting = null; w(l); } else this.lines.push(l);
    });
    this.proc.on('close', () => { this.waiting?.(null); this.waiting = null; });
  }
  next<T>(): Promise<T | null> {
    if (this.lines.length) return Promise.resolve(JSON.parse(this.lines.shift()!));
    if (this.proc.exitCode !== null) return Promise.resolve(null);
    return new Promise((resolve) => { this.waiting = (l) => resolve(l === null ? null : JSON.parse(l)); });
  }
  round(): Promise<Round | null> { this.proc.stdin!.write('round\n'); return this.next<Round>(); }
  close(): void { this.proc.stdin!.end('\n'); }
}

async function main(): Promise<void> {
  const log = (s: string) => console.error(s);
  const types = (arg('--types')?.split(',') ?? [...TYPES]) as GgufType[];
  const threadCounts = (arg('--threads') ?? '1,2').split(',').map(Number);
  const rounds = Number(arg('--rounds') ?? 4), steps = Number(arg('--steps') ?? 8);
  const load = (stage: string) => { const l = `${os.loadavg()[0].toFixed(2)} (${stage})`; log(`  load average ${l}`); return l; };
  const loads = [load('start')];
  const children: { spec: Spec; child: Child; ready: Ready; rounds: Round[] }[] = [];
  for (const type of types) {
    const file = await ggufFile(type, log);
    for (const threads of threadCounts) {
      for (const side of ['mla-wasm', 'llama.cpp'] as Side[]) {
        const spec = { side, type, threads, file, steps };
        const child = new Child(spec);
        const ready = await child.next<Ready>() ?? { ok: false, note: 'process ended' };
        log(`  ${side} ${type} ${threads}t: ${ready.ok ? `loaded in ${(ready.loadMs! / 1000).toFixed(1)} s, greedy token after the prompt ${ready.firstToken}` : `failed: ${ready.note}`}`);
        if (ready.ok) children.push({ spec, child, ready, rounds: [] }); else child.close();
      }
    }
  }
  loads.push(load('loaded'));
  for (let r = 0; r < rounds; r++) {
    for (const c of children) {
      const round = await c.child.round();
      if (round) c.rounds.push(round);
    }
    log(`  round ${r + 1} of ${rounds} done`);
  }
  loads.push(load('end'));
  for (const c of children) c.child.close();

  const rows = children.map((c) => ({
    side: c.spec.side, version: c.ready.version, type: c.spec.type, threads: c.spec.threads, firstToken: c.ready.firstToken, top: c.ready.top,
    ppTokensPerS: CONTEXT / median(c.rounds.map((x) => x.ppMs)) * 1000,
    tgMs: median(c.rounds.flatMap((x) => x.tgMs)), tgBest: Math.min(...c.rounds.flatMap((x) => x.tgMs)),
    // Each round's decode median, ours over llama.cpp's of the same round: paired, same minutes.
    tgMsByRound: c.rounds.map((x) => median(x.tgMs)), ppMsByRound: c.rounds.map((x) => x.ppMs),
  }));
  const md: string[] = [`Command: \`node scripts/run-ts.mjs bench/llama-peers.ts ${argv.join(' ')}\`, ${new Date().toISOString().slice(0, 16)} UTC; ` +
    `${os.cpus()[0]?.model.trim()}, ${os.cpus().length} cores; Node ${process.version}. 1-minute load average ${loads.join(', ')}. ` +
    `${rounds} rounds, each side in turn: one pp512 and ${steps} decode steps at ${CONTEXT}+ of context.`, '',
  '| engine | GGUF | threads | pp512 tokens/s | tg ms/token (median) | best | ours × (their ms / our ms), decode | ours × prefill | greedy token after the prompt (its rank in ours\' logits) |', '|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    const ours = rows.find((o) => o.side === 'mla-wasm' && o.type === r.type && o.threads === r.threads);
    const paired = ours && r !== ours ? median(r.tgMsByRound.map((t, i) => t / ours.tgMsByRound[i])).toFixed(2) : '';
    const pp = ours && r !== ours ? median(ours.ppMsByRound.map((t, i) => r.ppMsByRound[i] / t)).toFixed(2) : '';
    md.push(`| ${r.side} (${r.version}) | ${r.type.toUpperCase()} | ${r.threads} | ${r.ppTokensPerS.toFixed(1)} | ${r.tgMs.toFixed(2)} | ${r.tgBest.toFixed(2)} | ${paired} | ${pp} | ${r.firstToken}${ours ? ` (${ours.top!.indexOf(r.firstToken!) + 1 || '> 20'})` : ''} |`);
  }
  md.push('', '"ours ×": the median over rounds of their time / ours in the same round (> 1: ours faster).');
  console.log(md.join('\n'));
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/llama-peers.partial.json', JSON.stringify({ config: CONFIG, context: CONTEXT, rounds, steps, loads, rows }, null, 2));
}

if (argv[0] === '--worker') await worker(JSON.parse(argv[1]));
else await main();
