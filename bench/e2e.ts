// End to end: one decode step of a DeepSeek-V2-Lite-dims checkpoint (2 dense layers, F32, random
// weights written as safetensors) at 512 context, ours (loadModel, prefill 512 tokens, step) beside
// the same step as an ONNX graph under onnxruntime-web (wasm) and onnxruntime-node (native), at 1
// and 2 threads.
//
// The ONNX graph is built here in TypeScript from the same weights (bench/onnx.ts), not exported
// from PyTorch: it needs no Python, and every op is written out where it can be read beside
// src/decoder.ts. It computes our absorbed decode step exactly:
//   x = embed[id]; per layer: RMSNorm → q = x·W_qᵀ (no query compression) → [q_nope | q_rope],
//   RoPE on q_rope (DeepSeek's adjacent pairs); [c_kv | k_rope] = x·W_kv_aᵀ, RMSNorm(c_kv), RoPE(k_rope)
//   = the new latent cache row (an output); the cache of S rows is an input. Absorbed attention:
//   q̃_h = q_nope_h · W_UK_h, scores = [q̃ | q_rope] · [cache; new row]ᵀ · scale, softmax,
//   õ_h = p_h · C, o_h = õ_h · W_UV_hᵀ, o_proj; residual; RMSNorm; SwiGLU; residual;
//   final RMSNorm; lm_head.
// RoPE's cos/sin for the position are graph inputs (a host computes them, as ours does, with
// angle = f32(pos · f_k)), expanded to pairs: rope(x) = x ⊙ cos2 + (x · P) ⊙ sin2, P swapping the
// elements of each pair. Its logits are checked against ours (same weights, same cache, same token)
// before anything is timed.
//
// The per-token floor is (weight bytes read + cache bytes) / same-run DRAM bandwidth, two ways: the
// run's (the highest read figure of the whole run at that thread count) and, step by step, a read
// probe on as many threads in the same process taken just before the step (the median of the
// ratios is reported), since this machine's bandwidth moves between minutes.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { createRequire } from 'node:module';
import { expectedTensors, loadModel, parseConfig, ropeFrequencies, softmaxScale, type MlaAttention, type Model, type ModelConfig,
  type Session, type SimdBuild } from '../src/internal.js';
import { encodeModel, FLOAT, GraphBuilder, INT64, type Encoded } from './onnx.js';
import { decodeBytes } from './roofline.js';
import { inProcessReader, selfCommand, type InProcessReader } from './probes.js';

export const CONTEXT = 512;
/** Rounds in which every side times STEPS_PER_ROUND runs. */
const ROUNDS = 4, STEPS_PER_ROUND = 4;
/** Timed runs per in-process read probe. */
const PROBE_EVERY = 2;
/** Untimed runs before each block of timed ones, ms. */
const WARM_MS = 300;

/**
 * The in-process read probe, after a pause in which the threads of what was timed go idle
 * (onnxruntime's pool spins after a run; a probe beside a spinning thread reads less).
 */
async function probeAfterPause(reader: InProcessReader): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 30));
  return reader.read();
}

/** Hugging Face config.json of the checkpoint: V2-Lite's attention and dense MLP widths, 2 layers. */
export const E2E_CONFIG = {
  architectures: ['DeepseekV2ForCausalLM'],
  model_type: 'deepseek_v2',
  vocab_size: 32000,
  hidden_size: 2048,
  intermediate_size: 10944,
  num_hidden_layers: 2,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  q_lora_rank: null,
  kv_lora_rank: 512,
  qk_nope_head_dim: 128,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  max_position_embeddings: 4096,
  rope_scaling: null,
  n_routed_experts: null,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
};

/** Deterministic values of tensor `name`: uniform in ±1/√fan-in for matrices, 1 ± 0.1 for norms. */
export function tensorValues(name: string, shape: number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let s = 0x9e3779b9;
  for (let i = 0; i < name.length; i++) s = Math.imul(s ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const norm = shape.length === 1;
  const scale = norm ? 0.1 : 1 / Math.sqrt(shape[shape.length - 1]);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2147483648 - 1;
    out[i] = norm ? 1 + u * scale : u * scale;
  }
  return out;
}

/** The folder of the generated checkpoint and ONNX files (kept between runs; 2.4 GB). */
export function e2eDir(): string {
  return path.join(os.tmpdir(), 'mla-wasm-bench', 'e2e-v2lite-2l-v1');
}

/** Write config.json and model.safetensors (F32) unless they are there. */
function writeCheckpoint(dir: string, c: ModelConfig, log: (s: string) => void): void {
  const done = path.join(dir, 'model.safetensors');
  if (existsSync(done)) return;
  log(`  writing the checkpoint to ${dir} …`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(E2E_CONFIG, null, 2));
  const shapes = [...expectedTensors(c)];
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const tmp = done + '.tmp';
  const fd = openSync(tmp, 'w');
  const len = new Uint8Array(8);
  new DataView(len.buffer).setUint32(0, json.length, true);
  writeSync(fd, len);
  writeSync(fd, new TextEncoder().encode(json));
  for (const [name, shape] of shapes) {
    const v = tensorValues(name, shape);
    writeSync(fd, new Uint8Array(v.buffer));
  }
  closeSync(fd);
  renameSync(tmp, done);
}

/** [rows, cols] → [cols, rows]. */
function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  const B = 64;
  for (let i0 = 0; i0 < rows; i0 += B) {
    for (let j0 = 0; j0 < cols; j0 += B) {
      const i1 = Math.min(rows, i0 + B), j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) t[j * rows + i] = a[i * cols + j];
    }
  }
  return t;
}

/** The absorbed decode step as an ONNX graph (see the top of this file). */
export function buildStepGraph(c: ModelConfig): Encoded {
  const a = c.attention as MlaAttention;
  const H = a.heads, dn = a.nopeDim, dr = a.ropeDim, dc = a.kvLoraRank, dv = a.vDim, d = c.hidden;
  const row = dc + dr;
  const g = new GraphBuilder();
  const W = (name: string) => { const s = expectedTensors(c).get(name)!; return { v: tensorValues(name, s), s }; };
  /** y = x · Wᵀ with W stored [out, in]: the initializer is Wᵀ, [in, out]. */
  const linear = (x: string, name: string) => {
    const w = W(name);
    return g.op('MatMul', [x, g.f32(name + '.T', [w.s[1], w.s[0]], transpose(w.v, w.s[0], w.s[1]))]);
  };
  const eps = g.scalar('eps', c.rmsEps);
  const rms = (x: string, wName: string) => {
    const ms = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const r = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [ms, eps])])]);
    const w = W(wName);
    return g.op('Mul', [g.op('Mul', [x, r]), g.f32(wName, w.s, w.v)]);
  };
  // P: (x·P)[2i] = x[2i+1], (x·P)[2i+1] = x[2i]
  const P = new Float32Array(dr * dr);
  for (let k = 0; k < dr; k++) P[(k ^ 1) * dr + k] = 1;
  const pairSwap = g.f32('rope.pair_swap', [dr, dr], P);
  const rope = (x: string) => g.op('Add', [g.op('Mul', [x, 'cos']), g.op('Mul', [g.op('MatMul', [x, pairSwap]), 'sin'])]);
  const i64 = (name: string, v: number[]) => g.i64(name, v);
  const qShape = i64('shape.q', [H, dn + dr]), oShape = i64('shape.o', [1, H * dv]), qaShape = i64('shape.qa', [H, dc]);
  const splitQ = i64('split.q', [dn, dr]), splitKv = i64('split.kv', [dc, dr]);
  const ax1 = i64('axes.1', [1]), zero = i64('zero', [0]), dcEnd = i64('dc', [dc]);

  let x = g.op('Gather', ['model.embed_tokens.weight', 'ids'], { axis: 0 }); // [1, d]
  { const e = W('model.embed_tokens.weight'); g.f32('model.embed_tokens.weight', e.s, e.v); }
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    let xn = rms(x, p + 'input_layernorm.weight');
    const q = g.op('Reshape', [linear(xn, p + 'self_attn.q_proj.weight'), qShape]); // [H, dn + dr]
    const [qNope, qRope0] = g.opN('Split', [q, splitQ], 2, { axis: 1 });
    const qRope = rope(qRope0); // [H, dr]
    const kv = linear(xn, p + 'self_attn.kv_a_proj_with_mqa.weight'); // [1, dc + dr]
    const [cKv0, kRope0] = g.opN('Split', [kv, splitKv], 2, { axis: 1 });
    const cKv = rms(cKv0, p + 'self_attn.kv_a_layernorm.weight');
    g.op('Concat', [cKv, rope(kRope0)], { axis: 1 }, `new_row_${l}`); // [1, dc + dr]
    const full = g.op('Concat', [`cache_${l}`, `new_row_${l}`], { axis: 0 }); // [S + 1, dc + dr]
    // W_UK_h = kv_b rows [h(dn+dv), h(dn+dv)+dn) as [dn, dc]; W_UV_hᵀ = rows [h(dn+dv)+dn, (h+1)(dn+dv)) transposed, [dc, dv]
    const kvb = W(p + 'self_attn.kv_b_proj.weight').v;
    const wuk = new Float32Array(H * dn * dc), wuvT = new Float32Array(H * dc * dv);
    for (let h = 0; h < H; h++) {
      wuk.set(kvb.subarray(h * (dn + dv) * dc, (h * (dn + dv) + dn) * dc), h * dn * dc);
      wuvT.set(transpose(kvb.subarray((h * (dn + dv) + dn) * dc, (h + 1) * (dn + dv) * dc), dv, dc), h * dc * dv);
    }
    const qAbs = g.op('Reshape', [g.op('MatMul', [g.op('Unsqueeze', [qNope, ax1]), g.f32(p + 'W_UK', [H, dn, dc], wuk)]), qaShape]); // [H, dc]
    const qFull = g.op('Concat', [qAbs, qRope], { axis: 1 }); // [H, dc + dr]
    const scores = g.op('Gemm', [qFull, full], { transB: 1, alpha: { float: softmaxScale(c) } }); // [H, S + 1]
    const probs = g.op('Softmax', [scores], { axis: 1 });
    const latent = g.op('Slice', [full, zero, dcEnd, ax1]); // [S + 1, dc]
    const oLat = g.op('MatMul', [probs, latent]); // [H, dc]
    const o = g.op('Reshape', [g.op('MatMul', [g.op('Unsqueeze', [oLat, ax1]), g.f32(p + 'W_UV.T', [H, dc, dv], wuvT)]), oShape]); // [1, H·dv]
    x = g.op('Add', [x, linear(o, p + 'self_attn.o_proj.weight')]);
    xn = rms(x, p + 'post_attention_layernorm.weight');
    const gate = linear(xn, p + 'mlp.gate_proj.weight'), up = linear(xn, p + 'mlp.up_proj.weight');
    const hAct = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    x = g.op('Add', [x, linear(hAct, p + 'mlp.down_proj.weight')]);
  }
  const xn = rms(x, 'model.norm.weight');
  g.op('MatMul', [xn, g.f32('lm_head.weight.T', [d, c.vocabSize], transpose(W('lm_head.weight').v, c.vocabSize, d))], undefined, 'logits');
  return encodeModel({
    name: 'mla_absorbed_decode_step',
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [
      { name: 'ids', type: INT64, shape: [1] },
      { name: 'cos', type: FLOAT, shape: [1, dr] },
      { name: 'sin', type: FLOAT, shape: [1, dr] },
      ...Array.from({ length: c.layers }, (_, l) => ({ name: `cache_${l}`, type: FLOAT, shape: ['S', row] })),
    ],
    outputs: [
      { name: 'logits', type: FLOAT, shape: [1, c.vocabSize] },
      ...Array.from({ length: c.layers }, (_, l) => ({ name: `new_row_${l}`, type: FLOAT, shape: [1, row] })),
    ],
  });
}

function writeOnnx(dir: string, c: ModelConfig, log: (s: string) => void): string {
  const file = path.join(dir, 'step.onnx');
  if (existsSync(file)) return file;
  log('  building the ONNX graph of the step …');
  const e = buildStepGraph(c);
  const fd = openSync(file + '.tmp', 'w');
  for (const part of e.parts) writeSync(fd, part);
  closeSync(fd);
  renameSync(file + '.tmp', file);
  return file;
}

/** RoPE inputs at `pos`, exactly as rope_table computes them, expanded to pairs: cos2 = [c, c], sin2 = [−s, s]. */
export function ropeInputs(c: ModelConfig, pos: number): { cos: Float32Array; sin: Float32Array } {
  const dr = (c.attention as MlaAttention).ropeDim;
  const f = ropeFrequencies(dr, c.ropeTheta, c.yarn);
  const cos = new Float32Array(dr), sin = new Float32Array(dr);
  for (let k = 0; k < dr / 2; k++) {
    const angle = Math.fround(Math.fround(pos) * f[k]);
    const co = Math.fround(Math.cos(angle)), si = Math.fround(Math.sin(angle));
    cos[2 * k] = cos[2 * k + 1] = co;
    sin[2 * k] = -si; sin[2 * k + 1] = si;
  }
  return { cos, sin };
}

/** The latent cache rows 0 … S−1 of every layer, copied out of a session's memory (for the ONNX graph's input). */
export function latentCache(model: Model, session: Session, S: number): Float32Array[] {
  const a = model.config.attention as MlaAttention, kv = session.kvCache;
  if (kv.row !== a.kvLoraRank + a.ropeDim) throw new Error('e2e: the session caches something else than latent rows');
  return Array.from({ length: kv.layers }, (_, l) => kv.rows(l, 0, S).slice());
}

// ---------------------------------------------------------------------------------------------
// Each side runs in a child process of its own (`--e2e-worker <json>`, this runtime): ours
// (loadModel, prefill, steps) and each peer (onnxruntime, Node only). All stay loaded, and the
// parent asks them in turn for a few timed steps at a time, round after round, so every side is
// sampled across the same minutes: this machine is shared, and a neighbour's phase (seen here
// as 1-thread steps 15% slower for a block, the read probes beside them unchanged) would
// otherwise fall on one side only.
//
// Protocol: the child prints one JSON line when ready (E2eReady), then for each line `n` on its
// stdin times n runs and prints one line (E2eBlock); an empty line or the end of stdin ends it.

/** The prompt every run prefills, and the token of the step that is checked and timed. */
function e2ePrompt(c: ModelConfig): number[] {
  let s = 7;
  return Array.from({ length: CONTEXT }, () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return s % c.vocabSize; });
}
const STEP_ID = 17;

export interface E2eWorkerSpec {
  peer: 'mla-wasm' | 'onnxruntime-web' | 'onnxruntime-node'; threads: number; dir: string; build: SimdBuild;
  /** mla-wasm only: also write inputs.bin/json (the cache and RoPE inputs of the ONNX graph). */
  writeInputs?: boolean;
}
export interface E2eReady {
  peer: string; version: string; threads: number; ok: boolean; note?: string;
  loadMs?: number; logits?: string /* base64 f32 */;
  /** mla-wasm only: the prefill of CONTEXT tokens, ms. */
  prefillMs?: number;
}
/** Each timed run of a block, in order, and the in-process read probe (GB/s) taken before it. */
export interface E2eBlock { times: number[]; probeGBs: number[] }

/** One side, loaded and checked: `warm` runs untimed, `run` is what is timed. */
interface Side { ready: E2eReady; warm?: () => Promise<void>; run?: () => unknown; dispose?: () => Promise<void> | void }

export async function e2eWorker(spec: E2eWorkerSpec): Promise<void> {
  const side = spec.peer === 'mla-wasm' ? await oursSide(spec) : await onnxSide(spec);
  console.log(JSON.stringify(side.ready));
  if (!side.ready.ok) return;
  const reader = await inProcessReader(spec.build, spec.threads);
  for await (const line of createInterface({ input: process.stdin })) {
    const n = Number(line);
    if (!line || !(n > 0)) break;
    await side.warm!();
    const block: E2eBlock = { times: [], probeGBs: [] };
    for (let i = 0; i < n; i++) {
      const gbs = i % PROBE_EVERY === 0 ? await probeAfterPause(reader) : block.probeGBs[i - 1];
      const t = performance.now();
      const pending = side.run!(); // a promise only where the API is asynchronous
      if (pending instanceof Promise) await pending;
      block.times.push(performance.now() - t);
      block.probeGBs.push(gbs);
    }
    console.log(JSON.stringify(block));
  }
  reader.dispose();
  await side.dispose!();
}

const base64 = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');

/** Ours: load, prefill CONTEXT tokens, the checked step; each block then steps at CONTEXT + 3 … */
async function oursSide(spec: E2eWorkerSpec): Promise<Side> {
  const base = { peer: spec.peer, threads: spec.threads, version: '' };
  const c = parseConfig(E2E_CONFIG);
  const t0 = performance.now();
  const model = await loadModel(spec.dir, { simd: spec.build, threads: spec.threads });
  const loadMs = performance.now() - t0;
  if (model.threads !== spec.threads) {
    model.dispose();
    return { ready: { ...base, ok: false, note: `${spec.threads} threads asked, ${model.threads} available` } };
  }
  const session = model.createSession({ contextLength: CONTEXT + 128 });
  const t1 = performance.now();
  session.prefill(e2ePrompt(c));
  const prefillMs = performance.now() - t1;
  if (spec.writeInputs) {
    const a = c.attention as MlaAttention, row = a.kvLoraRank + a.ropeDim;
    const rope = ropeInputs(c, CONTEXT);
    const bin = new Float32Array(2 * a.ropeDim + c.layers * CONTEXT * row);
    bin.set(rope.cos, 0); bin.set(rope.sin, a.ropeDim);
    latentCache(model, session, CONTEXT).forEach((layer, l) => bin.set(layer, 2 * a.ropeDim + l * CONTEXT * row));
    writeFileSync(path.join(spec.dir, 'inputs.bin'), new Uint8Array(bin.buffer));
    writeFileSync(path.join(spec.dir, 'inputs.json'), JSON.stringify({ id: STEP_ID, dr: a.ropeDim, layers: c.layers, S: CONTEXT, row }));
  }
  const logits = session.step(STEP_ID);
  let id = 3;
  // The timed steps write their logits into one buffer, as a decode loop would (generate() does).
  const out = new Float32Array(c.vocabSize);
  return {
    ready: { ...base, ok: true, loadMs, prefillMs, logits: base64(logits) },
    warm: async () => {
      for (const until = performance.now() + WARM_MS; performance.now() < until;) {
        session.step(1, { out });
        if (session.position > CONTEXT + 64) session.truncate(CONTEXT + 1);
      }
      // Every block times the same steps: context CONTEXT + 3 … (the peers see CONTEXT + 1 rows).
      session.truncate(CONTEXT + 1);
      for (let i = 0; i < 2; i++) session.step(i, { out });
      id = 3;
    },
    run: () => session.step(id++, { out }),
    dispose: () => model.dispose(),
  };
}

/** onnxruntime-web or -node running step.onnx on inputs.bin. */
async function onnxSide(spec: E2eWorkerSpec): Promise<Side> {
  const base = { peer: spec.peer, threads: spec.threads };
  const req = createRequire(import.meta.url);
  let version = '?';
  try {
    let dir = path.dirname(req.resolve(spec.peer));
    while (!existsSync(path.join(dir, 'package.json')) || JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).name !== spec.peer) dir = path.dirname(dir);
    version = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  } catch { /* unknown */ }
  try {
    const name = spec.peer;
    const ort = await import(name);
    const web = spec.peer === 'onnxruntime-web';
    if (web) { ort.env.wasm.numThreads = spec.threads; ort.env.logLevel = 'error'; }
    const options: Record<string, unknown> = { executionProviders: [web ? 'wasm' : 'cpu'], graphOptimizationLevel: 'all' };
    if (!web) Object.assign(options, { intraOpNumThreads: spec.threads, interOpNumThreads: 1, executionMode: 'sequential' });
    const t0 = performance.now();
    const session = await ort.InferenceSession.create(readFileSync(path.join(spec.dir, 'step.onnx')), options);
    const loadMs = performance.now() - t0;
    const inputs = JSON.parse(readFileSync(path.join(spec.dir, 'inputs.json'), 'utf8'));
    const bin = readFileSync(path.join(spec.dir, 'inputs.bin'));
    const f32 = (off: number, n: number) => new Float32Array(bin.buffer.slice(bin.byteOffset + off * 4, bin.byteOffset + (off + n) * 4));
    const feeds: Record<string, unknown> = {
      ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(inputs.id)), [1]),
      cos: new ort.Tensor('float32', f32(0, inputs.dr), [1, inputs.dr]),
      sin: new ort.Tensor('float32', f32(inputs.dr, inputs.dr), [1, inputs.dr]),
    };
    for (let l = 0; l < inputs.layers; l++) {
      feeds[`cache_${l}`] = new ort.Tensor('float32', f32(2 * inputs.dr + l * inputs.S * inputs.row, inputs.S * inputs.row), [inputs.S, inputs.row]);
    }
    const out = await session.run(feeds);
    const logits = out.logits.data as Float32Array;
    return {
      ready: { ...base, version, ok: true, loadMs, logits: base64(logits) },
      warm: async () => { for (const until = performance.now() + WARM_MS; performance.now() < until;) await session.run(feeds); },
      run: () => session.run(feeds),
      dispose: async () => { await session.release?.(); },
    };
  } catch (e) {
    return { ready: { ...base, version, ok: false, note: String((e as Error)?.message ?? e).split('\n')[0].slice(0, 300) } };
  }
}

/** A worker child process, answering one JSON line per request. */
class WorkerProcess {
  private lines: string[] = [];
  private waiting: ((line: string | null) => void) | null = null;
  private ended = false;
  private stderrTail = '';
  private readonly child: ChildProcess;

  constructor(bundle: string, spec: E2eWorkerSpec) {
    const [cmd, ...pre] = selfCommand(bundle);
    this.child = spawn(cmd, [...pre, '--e2e-worker', JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return; // a runtime's own messages
      if (this.waiting) { const w = this.waiting; this.waiting = null; w(line); } else this.lines.push(line);
    });
    this.child.stderr!.on('data', (d) => { this.stderrTail = (this.stderrTail + d).slice(-2000); });
    this.child.on('close', () => { this.ended = true; this.waiting?.(null); this.waiting = null; });
    this.child.on('error', () => { this.ended = true; this.waiting?.(null); this.waiting = null; });
  }

  /** The next JSON line, or null when the process has ended (or gave nothing for 10 minutes). */
  next<T>(): Promise<T | null> {
    if (this.lines.length) return Promise.resolve(JSON.parse(this.lines.shift()!));
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.waiting = null; this.child.kill(); resolve(null); }, 600_000);
      this.waiting = (line) => { clearTimeout(timer); resolve(line === null ? null : JSON.parse(line)); };
    });
  }

  /** n timed runs. */
  block(n: number): Promise<E2eBlock | null> {
    if (!this.ended) this.child.stdin!.write(`${n}\n`);
    return this.next<E2eBlock>();
  }

  /** Why it ended: its exit status and its last line of error output. */
  get failure(): string {
    const { exitCode, signalCode } = this.child;
    const status = signalCode ? `killed by ${signalCode}` : exitCode !== null ? `exit code ${exitCode}` : 'no answer';
    const last = this.stderrTail.replace(/\x1b\[[0-9;]*m/g, '').trim().split('\n').slice(-1)[0];
    return last ? `${status} (last error output: ${last.slice(0, 200)})` : status;
  }

  async close(): Promise<void> {
    if (this.ended) return;
    const closed = new Promise((resolve) => this.child.once('close', resolve));
    this.child.stdin!.end('\n');
    await closed;
  }
}

// ---------------------------------------------------------------------------------------------
// The bench: ours and the peers, each in its own child process.

export interface E2eRow {
  runtime: string;
  threads: number;
  msPerToken: number;
  msBest: number;
  floorMs: number;
  /** floor / measured */
  ratio: number;
  /** The median of the in-process read probes taken between the timed steps, GB/s. */
  probeGBs?: number;
  /** The median over the timed steps of floor / step time, each floor from the probe just before that step. */
  ratioInterleaved?: number;
  /** Every timed step (ms) and the probe before it (GB/s), in order. */
  steps?: { ms: number; probeGBs: number }[];
  /** ours / this row's time: > 1 means ours is faster */
  oursSpeedup?: number;
  maxAbsDiff?: number;
  note?: string;
}

export interface E2eResult {
  config: typeof E2E_CONFIG;
  context: number;
  weightBytesRead: number;
  cacheBytes: number;
  dramGBs1: number;
  dramGBs2: number | null;
  prefillTokensPerS: number;
  rows: E2eRow[];
  rounds: number;
  stepsPerRound: number;
  warmMs: number;
  maxAbsLogit: number;
  verified: boolean;
}

export async function benchE2e(opts: { bundle: string; build: SimdBuild; threadCounts: number[]; dramGBs1: number; dramGBs2: number | null; nodePeers: boolean; log: (s: string) => void }): Promise<E2eResult> {
  const { log } = opts;
  const c = parseConfig(E2E_CONFIG);
  const dir = e2eDir();
  writeCheckpoint(dir, c, log);
  if (opts.nodePeers) writeOnnx(dir, c, log);

  // Every side loaded in its own process, in turn (ours at 1 thread first: its logits are the ones
  // the others are checked against, and it writes the ONNX graph's inputs).
  type Runner = { label: string; threads: number; proc: WorkerProcess; ready: E2eReady; times: number[]; probeGBs: number[]; stopped?: string };
  const runners: Runner[] = [];
  const failed: { label: string; threads: number; note: string }[] = [];
  let oursLogits: string | null = null;
  const sides: E2eWorkerSpec[] = [
    ...opts.threadCounts.map((threads) => ({ peer: 'mla-wasm' as const, threads, dir, build: opts.build })),
    ...(opts.nodePeers ? (['onnxruntime-web', 'onnxruntime-node'] as const).flatMap((peer) => [1, 2].map((threads) => ({ peer, threads, dir, build: opts.build }))) : []),
  ];
  try {
    for (const spec of sides) {
      const ours = spec.peer === 'mla-wasm';
      log(`  ${spec.peer} ${spec.threads}t: loading …`);
      const proc: WorkerProcess = new WorkerProcess(opts.bundle, { ...spec, writeInputs: ours && oursLogits === null });
      const ready: E2eReady | null = await proc.next<E2eReady>();
      const label = ours ? `mla-wasm (${opts.build} build)` : `${spec.peer} ${ready?.version ?? '?'}`;
      if (!ready?.ok) {
        const note = ready?.note ?? `process failed: ${proc.failure}`;
        await proc.close();
        if (ours && oursLogits === null) throw new Error(`e2e: ours at ${spec.threads} threads failed: ${note}`);
        failed.push({ label, threads: spec.threads, note });
        log(`  ${label} ${spec.threads}t: skipped (${note})`);
        continue;
      }
      if (ours) {
        // The pool's split keeps every output on one thread's code path: the same logits, bit for bit.
        if (oursLogits !== null && ready.logits !== oursLogits) throw new Error(`e2e: ${spec.threads} threads gave other logits than ${opts.threadCounts[0]}`);
        oursLogits ??= ready.logits!;
      }
      runners.push({ label, threads: spec.threads, proc, ready, times: [], probeGBs: [] });
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const r of runners.filter((x) => !x.stopped)) {
        const block = await r.proc.block(STEPS_PER_ROUND);
        if (block) { r.times.push(...block.times); r.probeGBs.push(...block.probeGBs); continue; }
        r.stopped = `its process stopped after ${r.times.length} timed steps: ${r.proc.failure}`;
        log(`  ${r.label} ${r.threads}t: ${r.stopped}`);
      }
    }
  } finally {
    await Promise.all(runners.map((r) => r.proc.close()));
  }

  const logitsOf = (b64: string) => new Float32Array(Uint8Array.from(Buffer.from(b64, 'base64')).buffer);
  const reference = logitsOf(oursLogits!);
  const maxAbsLogit = reference.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const bytes = decodeBytes(c, CONTEXT);
  const floorAt = (gbs: number) => (bytes.weights + bytes.cache) / (gbs * 1e6);
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  let verified = true;
  for (const r of runners.filter((x) => x.times.length === 0)) failed.push({ label: r.label, threads: r.threads, note: r.stopped! });
  const rows: E2eRow[] = runners.filter((r) => r.times.length > 0).map((r) => {
    const m = {
      msPerToken: median(r.times), msBest: Math.min(...r.times), probeGBs: median(r.probeGBs),
      ratioInterleaved: median(r.times.map((t, i) => floorAt(r.probeGBs[i]) / t)),
      steps: r.times.map((t, i) => ({ ms: +t.toFixed(3), probeGBs: +r.probeGBs[i].toFixed(2) })),
    };
    let check: { maxAbsDiff?: number; note?: string } = {};
    if (r.ready.peer !== 'mla-wasm') {
      const theirs = logitsOf(r.ready.logits!);
      let maxAbsDiff = 0;
      for (let i = 0; i < theirs.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(theirs[i] - reference[i]));
      const ok = theirs.length === reference.length && maxAbsDiff <= 1e-4 * Math.max(1, maxAbsLogit);
      if (!ok) verified = false;
      check = { maxAbsDiff, ...(ok ? {} : { note: `logits differ from ours by ${maxAbsDiff.toExponential(2)}: not comparable` }) };
    }
    log(`  ${r.label} ${r.threads}t: ${m.msPerToken.toFixed(2)} ms/token (best ${m.msBest.toFixed(2)}), probes ${m.probeGBs.toFixed(1)} GB/s, ` +
      `load ${(r.ready.loadMs! / 1000).toFixed(1)} s${r.ready.prefillMs ? `, prefill ${CONTEXT} tokens ${(r.ready.prefillMs / 1000).toFixed(1)} s` : ''}`);
    const note = [check.note, r.stopped].filter(Boolean).join('; ');
    return { runtime: r.label, threads: r.threads, ...m, floorMs: NaN, ratio: NaN, ...check, ...(note ? { note } : {}) };
  });
  for (const f of failed) rows.push({ runtime: f.label, threads: f.threads, msPerToken: NaN, msBest: NaN, floorMs: NaN, ratio: NaN, note: `skipped: ${f.note}` });
  // The run's floors: the highest bandwidth the run saw, the probes between the steps included.
  // Two threads read at least as fast as one: the 2-thread figure is never below the 1-thread one.
  const seen = (t: number) => runners.filter((r) => r.threads === t).flatMap((r) => r.probeGBs);
  const dram1 = Math.max(opts.dramGBs1, ...seen(1));
  const dram2 = Math.max(dram1, opts.dramGBs2 ?? 0, ...seen(2));
  const oursRows = rows.filter((r) => r.runtime.startsWith('mla-wasm'));
  for (const r of rows) {
    r.floorMs = floorAt(r.threads === 1 ? dram1 : dram2);
    r.ratio = r.floorMs / r.msPerToken;
    const o = oursRows.find((x) => x.threads === r.threads);
    if (o && o !== r && Number.isFinite(r.msPerToken)) r.oursSpeedup = r.msPerToken / o.msPerToken;
  }
  return {
    config: E2E_CONFIG, context: CONTEXT, weightBytesRead: bytes.weights, cacheBytes: bytes.cache,
    dramGBs1: dram1, dramGBs2: dram2, prefillTokensPerS: CONTEXT / runners[0].ready.prefillMs! * 1000,
    rows, rounds: ROUNDS, stepsPerRound: STEPS_PER_ROUND, warmMs: WARM_MS, maxAbsLogit, verified,
  };
}

/** Remove the generated files (2.4 GB). */
export function cleanE2e(): void {
  rmSync(e2eDir(), { recursive: true, force: true });
}
