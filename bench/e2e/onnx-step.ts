// The end-to-end bench's peer: our absorbed MLA decode step written as an ONNX graph, built here
// in TypeScript from the checkpoint's weights (no Python, no PyTorch export), so that every op can
// be read beside src/model/decoder.ts. It computes our absorbed decode step exactly:
//   x = embed[id]; per layer: RMSNorm → q = x·W_qᵀ (no query compression) → [q_nope | q_rope],
//   RoPE on q_rope (DeepSeek's adjacent pairs); [c_kv | k_rope] = x·W_kv_aᵀ, RMSNorm(c_kv), RoPE(k_rope)
//   = the new latent cache row (an output); the cache of S rows is an input. Absorbed attention:
//   q̃_h = q_nope_h · W_UK_h, scores = [q̃ | q_rope] · [cache; new row]ᵀ · scale, softmax,
//   õ_h = p_h · C, o_h = õ_h · W_UV_hᵀ, o_proj; residual; RMSNorm; SwiGLU; residual;
//   final RMSNorm; lm_head.
// RoPE's cos/sin for the position are graph inputs (a host computes them, as ours does, with
// angle = f32(pos · f_k)), expanded to pairs: rope(x) = x ⊙ cos2 + (x · P) ⊙ sin2, P swapping the
// elements of each pair. The runner checks its logits against ours before anything is timed.
//
// Narrow variants multiply by the weights ours holds in its int8 / int4 formats: 'nbits4' and
// 'nbits8' store every projection as onnxruntime's MatMulNBits (com.microsoft; blocks of 32,
// accuracy_level 4: the activations quantised to int8 per block, as ours does), int4 keeping
// lm_head in 8 bits as ours does; 'mmi8' quantises them per output column instead, run as
// DynamicQuantizeLinear + MatMulInteger (ONNX's own int8 ops, quantize_dynamic's form, u8·u8). The
// embedding holds ours' rounded rows as f32 (a step gathers one row). kv_b_proj stays f32, as ours.
import { closeSync, existsSync, openSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { expectedTensors, ropeFrequencies, softmaxScale, type MlaAttention, type Model, type ModelConfig,
  type Session } from '../../src/internal.js';
import { encodeModel, FLOAT, GraphBuilder, INT64, MS_DOMAIN, type Encoded } from '../onnx.js';
import { tensorValues } from './checkpoint.js';
import { dequantizeNBits, quantizeNBits } from './onnx-quant.js';

/** How the graph stores its projections (see the top of this file). */
export type StepGraph = 'f32' | 'nbits4' | 'nbits8' | 'mmi8';
export const STEP_GRAPHS: readonly StepGraph[] = ['f32', 'nbits4', 'nbits8', 'mmi8'];

/**
 * How far a narrow graph's logits may be from ours (same weights format), as a fraction of the
 * largest |logit|: both quantise the activations to int8, each rounding its own way (~1% apart on
 * test/bench-onnx.test.ts's config, where a graph of another weights format is ~7% away).
 * The f32 graph is held to 1e-4.
 */
export const NARROW_TOL = 2e-2;

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

/**
 * W [rows, cols] quantised per row to int8, symmetric (scale max|row| / 127): codes + 128 [cols,
 * rows] as MatMulInteger's uint8 B (zero point 128), and the scales. uint8 rather than int8 B: on
 * x86 without VNNI, onnxruntime's u8·s8 kernel sums pairs with pmaddubsw, which saturates at
 * 2·255·127 (its docs advise reduce_range there); u8·u8 takes a path that widens first.
 */
function quantizePerColumn(w: Float32Array, rows: number, cols: number): { codes: Uint8Array; scales: Float32Array } {
  const codes = new Uint8Array(rows * cols), scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let k = 0; k < cols; k++) amax = Math.max(amax, Math.abs(w[r * cols + k]));
    const s = Math.fround(amax / 127);
    scales[r] = s;
    for (let k = 0; k < cols; k++) codes[k * rows + r] = 128 + (s === 0 ? 0 : Math.round(w[r * cols + k] / s));
  }
  return { codes, scales };
}

/** The absorbed decode step as an ONNX graph (see the top of this file). */
export function buildStepGraph(c: ModelConfig, graph: StepGraph = 'f32'): Encoded {
  const a = c.attention as MlaAttention;
  const H = a.heads, dn = a.nopeDim, dr = a.ropeDim, dc = a.kvLoraRank, dv = a.vDim;
  const row = dc + dr;
  const g = new GraphBuilder();
  const W = (name: string) => { const s = expectedTensors(c).get(name)!; return { v: tensorValues(name, s), s }; };
  /** y = x · Wᵀ with W stored [out, in]: f32, the initializer is Wᵀ, [in, out]; MatMulNBits takes W as it is. */
  const linear = (x: string, name: string, out?: string) => {
    const { v, s: [N, K] } = W(name);
    if (graph === 'f32') return g.op('MatMul', [x, g.f32(name + '.T', [K, N], transpose(v, N, K))], undefined, out);
    if (graph === 'mmi8') {
      const q = quantizePerColumn(v, N, K);
      const [xq, xScale, xZero] = g.opN('DynamicQuantizeLinear', [x], 3);
      const acc = g.op('MatMulInteger', [xq, g.bytes(name + '.q', [K, N], q.codes), xZero, g.bytes(name + '.zero', [], Uint8Array.of(128))]);
      return g.op('Mul', [g.op('Mul', [g.op('Cast', [acc], { to: FLOAT }), xScale]), g.f32(name + '.scales', [N], q.scales)], undefined, out);
    }
    const bits = graph === 'nbits8' || name === 'lm_head.weight' ? 8 : 4;
    const q = quantizeNBits(v, N, K, bits);
    return g.op('MatMulNBits', [x, g.bytes(name + '.q', [N, K / 32, bits * 4], q.codes), g.f32(name + '.scales', [N, K / 32], q.scales)],
      { K, N, bits, block_size: 32, accuracy_level: 4 }, out, MS_DOMAIN);
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
  {
    const e = W('model.embed_tokens.weight'), [V, D] = e.s;
    const rows = graph === 'f32' ? e.v : dequantizeNBits(quantizeNBits(e.v, V, D, graph === 'nbits4' ? 4 : 8), V, D);
    g.f32('model.embed_tokens.weight', e.s, rows);
  }
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
  linear(xn, 'lm_head.weight', 'logits');
  return encodeModel({
    name: `mla_absorbed_decode_step_${graph}`,
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

/** The weights format of ours that each graph computes (its logits are checked against that side's). */
export const GRAPH_WEIGHTS: Record<StepGraph, 'f32' | 'int8' | 'int4'> = { f32: 'f32', nbits4: 'int4', nbits8: 'int8', mmi8: 'int8' };

/** What the runner calls each graph. */
export const GRAPH_LABELS: Record<StepGraph, string> = {
  f32: 'f32', nbits4: 'MatMulNBits 4-bit', nbits8: 'MatMulNBits 8-bit', mmi8: 'DynamicQuantizeLinear + MatMulInteger',
};

/**
 * Bytes of weights one step of the graph reads: every projection in its graph's format, kv_b_proj
 * and the norms in f32, one f32 row of the embedding.
 */
export function stepGraphWeightBytes(c: ModelConfig, graph: StepGraph): number {
  let bytes = 0;
  for (const [name, shape] of expectedTensors(c)) {
    const n = shape.reduce((x, y) => x * y, 1);
    if (name === 'model.embed_tokens.weight') bytes += 4 * shape[1];
    else if (shape.length === 1 || name.endsWith('kv_b_proj.weight') || graph === 'f32') bytes += 4 * n;
    else if (graph === 'mmi8') bytes += n + 4 * shape[0];
    else bytes += (graph === 'nbits8' || name === 'lm_head.weight' ? n : n / 2) + n / 8;
  }
  return bytes;
}

/** The file of a graph in the e2e folder. */
export const stepGraphFile = (graph: StepGraph): string => (graph === 'f32' ? 'step.onnx' : `step-${graph}.onnx`);

/** Write the graph's file into `dir` unless it is there; its path. */
export function writeOnnx(dir: string, c: ModelConfig, log: (s: string) => void, graph: StepGraph = 'f32'): string {
  const file = path.join(dir, stepGraphFile(graph));
  if (existsSync(file)) return file;
  log(`  building the ONNX graph of the step (${graph}) …`);
  const e = buildStepGraph(c, graph);
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
