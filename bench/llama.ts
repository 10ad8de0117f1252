// llama-bench style rows: prefill tokens/s (pp128, pp512) and decode tokens/s (tg64 at contexts
// 512, 4k, 16k), each beside its roofline floor from this run's probes:
//   prefill floor = flops / peak; decode floor = max(bytes read / DRAM bandwidth, flops / peak),
// at 1 thread and at 2 (or more) threads. The floors of t threads take t × one core's peak and the
// DRAM bandwidth of two readers at once (the higher of that and one reader's).
//
// (a) the default model, through the public API (loadModel, createSession, prefill, step): for tg64
//     at context L it prefills L tokens, then times 64 steps, 5 times (back to L each time; the
//     median counts, as llama-bench repeats each test 5 times). Its max_position_embeddings is 192
//     (its training windows), so for pp512 and every tg context the same weights are loaded with
//     that limit raised (RoPE then runs past the positions it was trained on, which changes the
//     text but not the work).
// (b) a synthetic model with DeepSeek-V2-Lite attention dims (bench/decode.ts), through a session
//     of its own: pp by Session.prefill; tg64 at context L fills the cache with random rows up to L
//     and times 64 steps from there, 5 times (a step's work does not depend on the cached values,
//     and prefilling 16k tokens of this model would take minutes).
import { loadModel, type Model, type ModelConfig, type SimdBuild } from '../src/internal.js';
import { syntheticModel, VARIANTS } from './decode.js';
import { inProcessReader } from './probes.js';
import { decodeBytes, decodeFlops, prefillFlops } from './roofline.js';

export interface Probes {
  /** GFLOP/s: the compute peak used for floors */
  peakGflops: number;
  /** GB/s: one thread's DRAM read bandwidth */
  dramGBs: number;
  /** GB/s: two processes reading at once, when measured */
  dramGBs2?: number | null;
}

export interface LlamaRow {
  model: string;
  test: string;
  threads: number;
  tokens: number;
  context: number;
  msPerToken: number;
  tokensPerS: number;
  floorMs: number;
  bound: 'compute' | 'DRAM';
  /** floor / measured: 1 is the roofline */
  ratio: number;
  /** for rows of more than one thread: the same test's 1-thread time / this one's */
  speedup?: number;
  /** tg rows: the better of the in-process read probes just before and after the test, GB/s */
  probeGBs?: number;
  note?: string;
}

function row(model: string, test: string, threads: number, tokens: number, context: number, totalMs: number, floorMs: number, bound: LlamaRow['bound'], note?: string): LlamaRow {
  const msPerToken = totalMs / tokens;
  return { model, test, threads, tokens, context, msPerToken, tokensPerS: 1000 / msPerToken, floorMs, bound, ratio: floorMs / msPerToken, ...(note ? { note } : {}) };
}

function prefillFloor(c: ModelConfig, T: number, p: Probes, threads: number): number {
  return prefillFlops(c, T) / (threads * p.peakGflops * 1e6) / T;
}

/**
 * The decode floor at context S. The DRAM figure is the run's, or the read probe taken beside the
 * test (`nearGBs`) when that is higher: this machine's bandwidth moves between minutes.
 */
function decodeFloor(c: ModelConfig, S: number, p: Probes, threads: number, nearGBs = 0): { ms: number; bound: LlamaRow['bound']; note?: string } {
  const b = decodeBytes(c, S);
  const dram = Math.max(threads > 1 ? Math.max(p.dramGBs, p.dramGBs2 ?? 0) : p.dramGBs, nearGBs);
  const mem = (b.weights + b.cache) / (dram * 1e6);
  const comp = decodeFlops(c, S, 'absorbed') / (threads * p.peakGflops * 1e6);
  // A step that reads little can find it all in the caches, where DRAM bandwidth is no bound.
  const small = b.weights + b.cache < 64 * 2 ** 20
    ? `reads ${((b.weights + b.cache) / 2 ** 20).toFixed(1)} MiB a step: cache-resident, so the DRAM figure is no real bound` : undefined;
  return mem >= comp ? { ms: mem, bound: 'DRAM', note: small } : { ms: comp, bound: 'compute' };
}

/** A file beside the bench: read from disk under Node, Deno and Bun, fetched in a browser page. */
async function readBytes(url: URL): Promise<Uint8Array> {
  if (url.protocol === 'file:') return (await import('node:fs')).readFileSync(url);
  return new Uint8Array(await (await fetch(url)).arrayBuffer());
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function ids(n: number, vocab: number, seed = 3): number[] {
  let s = seed;
  return Array.from({ length: n }, () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s % vocab; });
}

export const PP = [128, 512];
export const TG_CONTEXTS = [512, 4096, 16384];
const TG = 64;
/** Timed runs of each tg test (the median counts), as llama-bench repeats each test 5 times. */
const TG_REPS = 5;

/** (a) The default model through the public API. */
async function defaultModelRows(build: SimdBuild, threads: number, p: Probes, probe: () => number, contexts: number[], quick: boolean, log: (s: string) => void): Promise<LlamaRow[]> {
  const rows: LlamaRow[] = [];
  const name = 'fortune-mla (default)';
  const model = await loadModel(undefined, { simd: build, threads });
  const t = `${model.threads}t`;
  const c = model.config;
  const vocab = c.vocabSize;
  // Tests past max_position_embeddings: the same checkpoint with the limit raised, loaded once.
  const raised: { model?: Model } = {};
  const modelFor = async (length: number): Promise<{ m: Model; note?: string }> => {
    if (length <= c.maxPositions) return { m: model };
    if (!raised.model) {
      const dir = new URL('../models/fortune-mla/', import.meta.url);
      const cfg = JSON.parse(new TextDecoder().decode(await readBytes(new URL('config.json', dir))));
      cfg.max_position_embeddings = Math.max(...PP, ...contexts.map((L) => L + TG));
      raised.model = await loadModel({
        'config.json': new TextEncoder().encode(JSON.stringify(cfg)),
        'model.safetensors': await readBytes(new URL('model.safetensors', dir)),
      }, { simd: build, threads });
    }
    return { m: raised.model, note: `max_position_embeddings ${c.maxPositions} raised to ${raised.model.config.maxPositions} for timing` };
  };
  for (const T of PP) {
    const { m, note } = await modelFor(T);
    const s = m.createSession({ contextLength: T });
    const prompt = ids(T, vocab);
    s.prefill(prompt); // warm-up
    const times: number[] = [];
    for (let i = 0; i < (quick ? 3 : 7); i++) {
      s.reset();
      const t0 = performance.now();
      s.prefill(prompt);
      times.push(performance.now() - t0);
    }
    s.dispose();
    rows.push(row(name, `pp${T}`, model.threads, T, T, median(times), prefillFloor(c, T, p, model.threads), 'compute', note));
    log(`  ${name} ${t} pp${T}: ${(T / median(times) * 1000).toFixed(0)} tokens/s`);
  }
  for (const L of contexts) {
    const { m, note } = await modelFor(L + TG);
    const s = m.createSession({ contextLength: L + TG });
    const t0 = performance.now();
    s.prefill(ids(L - 3, vocab));
    for (let i = 0; i < 3; i++) s.step(i); // warm-up steps: the context reaches L
    const prefillMs = performance.now() - t0;
    const before = probe();
    const times: number[] = [];
    for (let r = 0; r < (quick ? 2 : TG_REPS); r++) {
      const t1 = performance.now();
      for (let i = 0; i < TG; i++) s.step(i % vocab);
      times.push(performance.now() - t1);
      s.truncate(L);
    }
    const ms = median(times);
    const near = Math.max(before, probe());
    s.dispose();
    // The floor at the middle of the 64 steps' contexts.
    const f = decodeFloor(c, L + TG / 2, p, model.threads, near);
    rows.push({ ...row(name, `tg${TG} @ ${L}`, model.threads, TG, L, ms, f.ms, f.bound, [note, f.note].filter(Boolean).join('; ') || undefined), probeGBs: near });
    log(`  ${name} ${t} tg${TG} @ ${L}: ${(TG / ms * 1000).toFixed(0)} tokens/s (prefill of ${L} took ${(prefillMs / 1000).toFixed(1)} s)`);
  }
  model.dispose();
  raised.model?.dispose();
  return rows;
}

/** (b) The synthetic V2-Lite-dims model, its cache filled with random rows for tg. */
async function syntheticRows(build: SimdBuild, threads: number, p: Probes, probe: () => number, contexts: number[], quick: boolean, log: (s: string) => void): Promise<LlamaRow[]> {
  const rows: LlamaRow[] = [];
  const v = VARIANTS[0]; // MLA, absorbed decode
  const model = await syntheticModel(v.attention, { simd: build, threads });
  const c = model.config;
  const name = `V2-Lite attention dims, ${c.layers} layers (synthetic)`;
  const used = model.threads;
  const s = model.createSession({ contextLength: Math.max(...contexts) + TG + 1 });
  const out = new Float32Array(c.vocabSize);
  const prefill = (prompt: number[]) => { s.truncate(0); s.prefill(prompt, { out }); };
  for (const T of PP) {
    const prompt = ids(T, c.vocabSize);
    prefill(prompt); // warm-up
    const times: number[] = [];
    for (let i = 0; i < (quick ? 2 : 5); i++) {
      const t0 = performance.now();
      prefill(prompt);
      times.push(performance.now() - t0);
    }
    rows.push(row(name, `pp${T}`, used, T, T, median(times), prefillFloor(c, T, p, used), 'compute'));
    log(`  synthetic ${used}t pp${T}: ${(T / median(times) * 1000).toFixed(1)} tokens/s`);
  }
  const mem = s.kvCache.all();
  for (let i = 0; i < mem.length; i++) mem[i] = Math.sin(i) * 0.5;
  for (const L of contexts) {
    for (let i = 0; i < 3; i++) { s.skipTo(L); s.step(1, { out }); } // warm-up
    const before = probe();
    const times: number[] = [];
    for (let r = 0; r < (quick ? 2 : TG_REPS); r++) {
      s.skipTo(L); // the steps run over the random rows before L
      const t0 = performance.now();
      for (let i = 0; i < TG; i++) s.step(1, { out });
      times.push(performance.now() - t0);
    }
    const ms = median(times);
    const near = Math.max(before, probe());
    const f = decodeFloor(c, L + TG / 2, p, used, near);
    rows.push({ ...row(name, `tg${TG} @ ${L}`, used, TG, L, ms, f.ms, f.bound, 'cache filled with random rows'), probeGBs: near });
    log(`  synthetic ${used}t tg${TG} @ ${L}: ${(TG / ms * 1000).toFixed(1)} tokens/s`);
  }
  model.dispose();
  return rows;
}

/** Every row at each thread count of `threadCounts` (a count the pool cannot give is left out). */
export async function benchLlama(build: SimdBuild, p: Probes, threadCounts: number[], quick: boolean, log: (s: string) => void): Promise<LlamaRow[]> {
  // --quick leaves out 16k context (prefilling it takes the default model ~20 s).
  const contexts = quick ? TG_CONTEXTS.filter((L) => L <= 4096) : TG_CONTEXTS;
  const rows: LlamaRow[] = [];
  for (const threads of threadCounts) {
    // A read probe on as many threads, in this process, just before and after each tg test.
    const reader = await inProcessReader(build, threads);
    const probe = () => reader.read();
    const made = [...await defaultModelRows(build, threads, p, probe, contexts, quick, log), ...await syntheticRows(build, threads, p, probe, contexts, quick, log)];
    reader.dispose();
    for (const r of made) {
      if (r.threads !== threads) continue;
      const one = rows.find((x) => x.threads === 1 && x.model === r.model && x.test === r.test);
      if (one && threads > 1) r.speedup = one.msPerToken / r.msPerToken;
      rows.push(r);
    }
  }
  return rows;
}
