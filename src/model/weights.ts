// Which tensors a config implies, checking a checkpoint against that list before anything big is
// allocated, and placing the weights in WebAssembly memory. Projections that read the same input
// are stored side by side as one matrix, so one matmul computes them together:
//   MLA:   [q_a_proj | kv_a_proj_with_mqa]  (or [q_proj | kv_a_proj_with_mqa])
//   Llama: [q_proj | k_proj | v_proj]
//   MLP:   [gate_proj | up_proj]
// Matrices wider than PANEL_COLS are stored in column panels (see Matrix).
import type { ModelConfig } from '../formats/config.js';
import { MlaError } from '../errors.js';
import type { Heap } from '../host/heap.js';
import type { TensorSource } from '../formats/tensor-source.js';


/**
 * A weight matrix W[rows, cols] (Hugging Face [out, in]) at byte offset `ptr`, stored as column
 * panels: panel p holds columns [p·panelCols, p·panelCols + width_p) of every row, row after row
 * (row stride width_p), and the panels follow one another. With one panel (panelCols = cols) that
 * is the plain row-major layout.
 *
 * Why: a matvec streams W fastest while x stays in L1 beside the stream (matvec reads two rows
 * 2 MiB apart at a time, see PAIR_BYTES in assembly/matmul.ts). Up to PANEL_COLS floats of x do; a
 * wider row (down_proj's 10944) pushes x out, and W is then read four neighbouring rows at a time,
 * which this machine serves at ~27 GB/s. Six panels of 1824 columns measured 36.5 GB/s against a
 * 39.6 GB/s read probe when matvec still read one row at a time (2048 × 10944, one thread). A
 * product then sums its panels' partial products in order (matmul_nt's `acc`).
 */
export interface Matrix {
  ptr: number;
  rows: number;
  cols: number;
  panelCols: number;
}

/** The widest panel: 2048 floats of x (8 KiB) stay in L1 next to the two streams of W. */
export const PANEL_COLS = 2048;

/** Column width of each panel but the last for a matrix `cols` wide: equal panels, a multiple of 4 floats. */
export function panelWidth(cols: number): number {
  if (cols <= PANEL_COLS) return cols;
  const panels = Math.ceil(cols / PANEL_COLS);
  return Math.ceil(cols / panels / 4) * 4;
}

export interface LayerWeights {
  inputNorm: number;
  postNorm: number;
  /** The fused input projection, `inRows` × hidden. */
  wIn: Matrix;
  inRows: number;
  /** MLA only: q_a_layernorm (0 without query compression), q_b_proj, kv_a_layernorm, kv_b_proj. */
  qNorm: number;
  wqB: Matrix | null;
  kvNorm: number;
  /**
   * kv_b_proj, one panel, its rows grouped by kind: [W_UK of every head (heads·d_n rows) ; W_UV of
   * every head (heads·d_v rows)] (Hugging Face interleaves them head by head). Decode reads all
   * heads' W_UK, then all heads' W_UV, one head after another: grouped, each is one 4 MiB stream
   * (V2-Lite dims), not 16 blocks of 256 KiB with a restart at each.
   */
  wkvB: Matrix | null;
  /**
   * The two halves of wkvB, for absorbed attention: W_UK of every head ([heads·d_n, d_c], head h's
   * d_n rows at + h·d_n·d_c floats) and W_UV of every head ([heads·d_v, d_c], likewise).
   */
  wUK: Matrix | null;
  wUV: Matrix | null;
  wo: Matrix;
  /** Dense SwiGLU: [gate | up] (2·intermediate × hidden) and down (null in MoE layers). */
  wGateUp: Matrix | null;
  wDown: Matrix | null;
  moe: MoeWeights | null;
}

/** An MoE layer: the router, each routed expert's SwiGLU, and the shared experts' (null when none). */
export interface MoeWeights {
  router: Matrix;
  /** e_score_correction_bias, read by the host for selection (noaux_tc only). */
  bias: Float32Array | null;
  experts: { gateUp: Matrix; down: Matrix }[];
  sharedGateUp: Matrix | null;
  sharedDown: Matrix | null;
}

export interface Weights {
  /** Rows are read one token at a time, so never in panels. */
  embed: Matrix;
  finalNorm: number;
  lmHead: Matrix;
  layers: LayerWeights[];
  /** Bytes of the weights as f32 (weightBytes). */
  bytes: number;
  /** Where the weights' block starts (its size is weightBlockBytes). */
  block: number;
}

type Shapes = Map<string, number[]>;

/** Every tensor name the config implies, with its shape ([out, in] for matrices). */
export function expectedTensors(c: ModelConfig): Shapes {
  const s: Shapes = new Map();
  globalTensors(c, s);
  for (let l = 0; l < c.layers; l++) layerTensors(c, l, s);
  return s;
}

function globalTensors(c: ModelConfig, s: Shapes): void {
  s.set('model.embed_tokens.weight', [c.vocabSize, c.hidden]);
  s.set('model.norm.weight', [c.hidden]);
  if (!c.tieEmbeddings) s.set('lm_head.weight', [c.vocabSize, c.hidden]);
}

function layerTensors(c: ModelConfig, l: number, s: Shapes): void {
  const d = c.hidden, a = c.attention;
  {
    const p = `model.layers.${l}.`;
    s.set(p + 'input_layernorm.weight', [d]);
    s.set(p + 'post_attention_layernorm.weight', [d]);
    if (a.kind === 'mla') {
      const qRows = a.heads * (a.nopeDim + a.ropeDim);
      if (a.qLoraRank) {
        s.set(p + 'self_attn.q_a_proj.weight', [a.qLoraRank, d]);
        s.set(p + 'self_attn.q_a_layernorm.weight', [a.qLoraRank]);
        s.set(p + 'self_attn.q_b_proj.weight', [qRows, a.qLoraRank]);
      } else {
        s.set(p + 'self_attn.q_proj.weight', [qRows, d]);
      }
      s.set(p + 'self_attn.kv_a_proj_with_mqa.weight', [a.kvLoraRank + a.ropeDim, d]);
      s.set(p + 'self_attn.kv_a_layernorm.weight', [a.kvLoraRank]);
      s.set(p + 'self_attn.kv_b_proj.weight', [a.heads * (a.nopeDim + a.vDim), a.kvLoraRank]);
      s.set(p + 'self_attn.o_proj.weight', [d, a.heads * a.vDim]);
    } else {
      s.set(p + 'self_attn.q_proj.weight', [a.heads * a.headDim, d]);
      s.set(p + 'self_attn.k_proj.weight', [a.kvHeads * a.headDim, d]);
      s.set(p + 'self_attn.v_proj.weight', [a.kvHeads * a.vDim, d]);
      s.set(p + 'self_attn.o_proj.weight', [d, a.heads * a.vDim]);
    }
    const swiglu = (prefix: string, width: number) => {
      s.set(prefix + 'gate_proj.weight', [width, d]);
      s.set(prefix + 'up_proj.weight', [width, d]);
      s.set(prefix + 'down_proj.weight', [d, width]);
    };
    const f = c.ffn[l];
    if (f.kind === 'dense') {
      swiglu(p + 'mlp.', f.intermediate);
    } else {
      s.set(p + 'mlp.gate.weight', [f.experts, d]);
      if (f.method === 'noaux_tc') s.set(p + 'mlp.gate.e_score_correction_bias', [f.experts]);
      for (let e = 0; e < f.experts; e++) swiglu(`${p}mlp.experts.${e}.`, f.intermediate);
      if (f.sharedIntermediate) swiglu(p + 'mlp.shared_experts.', f.sharedIntermediate);
    }
  }
}

// Buffers some exporters keep in checkpoints; they are recomputed from the config, never read.
const IGNORED = /\.rotary_emb\.inv_freq$/;

/** Throw MISSING_TENSOR / UNEXPECTED_TENSOR / BAD_SHAPE naming every offending tensor. */
export function checkTensors(c: ModelConfig, src: TensorSource): Shapes {
  const want = expectedTensors(c);
  const have = new Set([...src.names()].filter((n) => !IGNORED.test(n)));
  const missing = [...want.keys()].filter((n) => !have.has(n));
  if (missing.length) throw new MlaError('MISSING_TENSOR', `checkpoint lacks ${missing.length} tensor(s): ${list(missing)}`);
  const extra = [...have].filter((n) => !want.has(n));
  if (extra.length) throw new MlaError('UNEXPECTED_TENSOR', `checkpoint has ${extra.length} tensor(s) the config does not explain: ${list(extra)}`);
  const wrong = [...want].filter(([n, shape]) => String(src.shape(n)) !== String(shape))
    .map(([n, shape]) => `${n} is [${src.shape(n)}], expected [${shape}]`);
  if (wrong.length) throw new MlaError('BAD_SHAPE', `wrong shape: ${list(wrong)}`);
  return want;
}

function list(items: string[]): string {
  return items.length > 8 ? `${items.slice(0, 8).join(', ')} … and ${items.length - 8} more` : items.join(', ');
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Rows of the fused input projection: [q_a | kv_a] or [q | kv_a] (MLA), [q | k | v] (Llama). */
export function inputRows(c: ModelConfig): number {
  const a = c.attention;
  return a.kind === 'mla'
    ? (a.qLoraRank ?? a.heads * (a.nopeDim + a.ropeDim)) + a.kvLoraRank + a.ropeDim
    : a.heads * a.headDim + a.kvHeads * (a.headDim + a.vDim);
}

/**
 * Weight matrices start on a 4 KiB boundary (and the decoder's activation vectors 2 KiB past one):
 * a matvec whose input vector shares the weight rows' offset within 4 KiB competes with them for
 * the same L1 sets (4096×4096 here: 28 GB/s at the same offset, 33 GB/s 2 KiB apart). Vectors
 * (norm weights) sit together after the matrices, so they do not push matrices off the boundary.
 */
export const MATRIX_ALIGN = 4096;
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** kv_b_proj's rows [h: d_n of W_UK_h, d_v of W_UV_h] regrouped as [W_UK of every head ; W_UV of every head]. */
function groupHeadRows(w: Float32Array, heads: number, dn: number, dv: number, dc: number): void {
  const hf = w.slice();
  for (let h = 0; h < heads; h++) {
    const head = h * (dn + dv) * dc;
    w.set(hf.subarray(head, head + dn * dc), h * dn * dc);
    w.set(hf.subarray(head + dn * dc, head + (dn + dv) * dc), heads * dn * dc + h * dv * dc);
  }
}

/** Sums over the tensors the config implies (one layer of each FFN kind is counted, not every layer). */
function tensorSums(c: ModelConfig): { numbers: number; matrixBytes: number; vectorBytes: number } {
  const sums = (s: Shapes) => {
    let numbers = 0, matrixBytes = 0, vectorBytes = 0;
    for (const shape of s.values()) {
      const n = count(shape);
      numbers += n;
      if (shape.length > 1) matrixBytes += alignUp(n * 4, MATRIX_ALIGN);
      else vectorBytes += n * 4;
    }
    return { numbers, matrixBytes, vectorBytes };
  };
  const g: Shapes = new Map();
  globalTensors(c, g);
  const total = sums(g);
  const perFfn = new Map<object, ReturnType<typeof sums>>();
  for (let l = 0; l < c.layers; l++) {
    const f = c.ffn[l];
    if (!perFfn.has(f)) { const s: Shapes = new Map(); layerTensors(c, l, s); perFfn.set(f, sums(s)); }
    const x = perFfn.get(f)!;
    total.numbers += x.numbers; total.matrixBytes += x.matrixBytes; total.vectorBytes += x.vectorBytes;
  }
  return total;
}

/** Bytes of the weights as f32. */
export function weightBytes(c: ModelConfig): number {
  return tensorSums(c).numbers * 4;
}

/** Bytes of WebAssembly memory placeWeights allocates: the weights, their alignment, at most. */
export function weightBlockBytes(c: ModelConfig): number {
  const t = tensorSums(c);
  return MATRIX_ALIGN + t.matrixBytes + t.vectorBytes;
}

/**
 * Check, allocate and fill. Throws before allocating anything if the checkpoint does not match.
 * `onProgress(done, total)` is called with 0 and then after each tensor, with bytes placed so far.
 */
export function placeWeights(c: ModelConfig, src: TensorSource, heap: Heap,
  onProgress?: (done: number, total: number) => void): Weights {
  const shapes = checkTensors(c, src);
  const bytes = weightBytes(c);
  const block = heap.alloc(weightBlockBytes(c), 'the weights');
  // Matrices from the first 4 KiB boundary on, each on a boundary; vectors after all of them.
  let nextMatrix = alignUp(block, MATRIX_ALIGN);
  let nextVector = nextMatrix + tensorSums(c).matrixBytes;
  let done = 0;
  onProgress?.(0, bytes);
  // Consecutive tensors listed together land side by side: one fused matrix.
  const place = (...names: string[]): number => {
    const matrix = shapes.get(names[0])!.length > 1;
    const ptr = matrix ? nextMatrix : nextVector;
    let next = ptr;
    for (const name of names) {
      const n = count(shapes.get(name)!);
      const view = heap.f32(next, n);
      src.read(name, view);
      for (let i = 0; i < n; i++) {
        if (!Number.isFinite(view[i])) throw new MlaError('NON_FINITE', `tensor ${name} holds ${view[i]} at element ${i}`);
      }
      next += n * 4;
      done += n * 4;
      onProgress?.(done, bytes);
    }
    if (matrix) nextMatrix = alignUp(next, MATRIX_ALIGN);
    else nextVector = next;
    return ptr;
  };
  // Place a (fused) matrix, then rearrange it into column panels when it is wider than PANEL_COLS.
  const placeMatrix = (panels: boolean, ...names: string[]): Matrix => {
    const ptr = place(...names);
    const cols = shapes.get(names[0])![1];
    const rows = names.reduce((r, name) => r + shapes.get(name)![0], 0);
    const panelCols = panels ? panelWidth(cols) : cols;
    if (panelCols < cols) {
      const rowMajor = heap.f32(ptr, rows * cols).slice();
      const out = heap.f32(ptr, rows * cols);
      let o = 0;
      for (let c0 = 0; c0 < cols; c0 += panelCols) {
        const width = Math.min(panelCols, cols - c0);
        for (let r = 0; r < rows; r++, o += width) out.set(rowMajor.subarray(r * cols + c0, r * cols + c0 + width), o);
      }
    }
    return { ptr, rows, cols, panelCols };
  };
  const embed = placeMatrix(false, 'model.embed_tokens.weight');
  const finalNorm = place('model.norm.weight');
  const lmHead = c.tieEmbeddings ? embed : placeMatrix(true, 'lm_head.weight');
  const a = c.attention;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`;
    const w = {} as LayerWeights;
    w.inputNorm = place(p + 'input_layernorm.weight');
    w.postNorm = place(p + 'post_attention_layernorm.weight');
    w.qNorm = w.kvNorm = 0;
    w.wqB = w.wkvB = w.wUK = w.wUV = null;
    if (a.kind === 'mla') {
      const qFirst = a.qLoraRank ? 'self_attn.q_a_proj.weight' : 'self_attn.q_proj.weight';
      w.wIn = placeMatrix(true, p + qFirst, p + 'self_attn.kv_a_proj_with_mqa.weight');
      w.inRows = inputRows(c);
      if (a.qLoraRank) {
        w.qNorm = place(p + 'self_attn.q_a_layernorm.weight');
        w.wqB = placeMatrix(true, p + 'self_attn.q_b_proj.weight');
      }
      w.kvNorm = place(p + 'self_attn.kv_a_layernorm.weight');
      w.wkvB = placeMatrix(false, p + 'self_attn.kv_b_proj.weight');
      groupHeadRows(heap.f32(w.wkvB.ptr, w.wkvB.rows * w.wkvB.cols), a.heads, a.nopeDim, a.vDim, a.kvLoraRank);
      const dc = a.kvLoraRank, ukRows = a.heads * a.nopeDim;
      w.wUK = { ptr: w.wkvB.ptr, rows: ukRows, cols: dc, panelCols: dc };
      w.wUV = { ptr: w.wkvB.ptr + ukRows * dc * 4, rows: a.heads * a.vDim, cols: dc, panelCols: dc };
    } else {
      w.wIn = placeMatrix(true, p + 'self_attn.q_proj.weight', p + 'self_attn.k_proj.weight', p + 'self_attn.v_proj.weight');
      w.inRows = inputRows(c);
    }
    w.wo = placeMatrix(true, p + 'self_attn.o_proj.weight');
    const f = c.ffn[l];
    w.wGateUp = w.wDown = null;
    w.moe = null;
    if (f.kind === 'dense') {
      w.wGateUp = placeMatrix(true, p + 'mlp.gate_proj.weight', p + 'mlp.up_proj.weight');
      w.wDown = placeMatrix(true, p + 'mlp.down_proj.weight');
    } else {
      const router = placeMatrix(true, p + 'mlp.gate.weight');
      let bias: Float32Array | null = null;
      if (f.method === 'noaux_tc') {
        const name = p + 'mlp.gate.e_score_correction_bias';
        bias = new Float32Array(f.experts);
        src.read(name, bias);
        if (!bias.every(Number.isFinite)) throw new MlaError('NON_FINITE', `tensor ${name} holds a non-finite value`);
      }
      const experts = Array.from({ length: f.experts }, (_, e) => ({
        gateUp: placeMatrix(true, `${p}mlp.experts.${e}.gate_proj.weight`, `${p}mlp.experts.${e}.up_proj.weight`),
        down: placeMatrix(true, `${p}mlp.experts.${e}.down_proj.weight`),
      }));
      const shared = f.sharedIntermediate > 0;
      const sharedGateUp = shared ? placeMatrix(true, p + 'mlp.shared_experts.gate_proj.weight', p + 'mlp.shared_experts.up_proj.weight') : null;
      const sharedDown = shared ? placeMatrix(true, p + 'mlp.shared_experts.down_proj.weight') : null;
      w.moe = { router, bias, experts, sharedGateUp, sharedDown };
    }
    layers.push(w);
  }
  return { embed, finalNorm, lmHead, layers, bytes, block };
}
