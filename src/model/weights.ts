// Which tensors a config implies, checking a checkpoint against that list before anything big is
// allocated, and placing the weights in WebAssembly memory. Projections that read the same input
// are stored side by side as one matrix, so one matmul computes them together:
//   MLA:   [q_a_proj | kv_a_proj_with_mqa]  (or [q_proj | kv_a_proj_with_mqa])
//   Llama: [q_proj | k_proj | v_proj]
//   MLP:   [gate_proj | up_proj]
// Matrices wider than PANEL_COLS are stored in column panels (see Matrix). Tensors a file stores
// in types with no common narrow form stay apart, each in its own format (MatrixChoice 'mixed').
import type { ModelConfig } from '../formats/config.js';
import { MlaError, showValue } from '../errors.js';
import type { Heap } from '../host/heap.js';
import type { KeptType, SuperBlockType, TensorSource } from '../formats/tensor-source.js';
import { f16BitsToF32, f32ToF16Bits } from '../formats/quant-blocks.js';


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
  /** How the weights are stored (MatrixFormat); narrow formats are one panel (panelCols = cols). */
  format: MatrixChoice;
  /** q8 / q4: byte offset of the scales, f32 [rows, cols/32]; 0 otherwise. */
  scales: number;
  /** 'mixed' only: the matrices its tensors are kept as, each in its own format, rows in order. */
  parts?: readonly Matrix[];
}

/**
 * A matrix's storage: f32; bf16 or f16 (u16 a weight); q8 or q4, symmetric blocks of 32 along a
 * row with an f32 scale each (assembly/quant.ts), into which llama.cpp's Q8_0 and Q4_0 copy;
 * q4k, q5k or q6k, llama.cpp's Q4_K / Q5_K / Q6_K super-blocks as the file stores them (assembly/kquants.ts).
 */
export type MatrixFormat = 'f32' | 'bf16' | 'f16' | 'q8' | 'q4' | 'q4k' | 'q5k' | 'q6k';

/**
 * What a plan picks for a matrix: one format, or 'mixed' for a fused matrix whose tensors a file
 * stores in types with no common narrow form (a Q4_K_M file's [q | k | v] with a Q6_K v): each
 * tensor is then kept in its own format, as one of the matrix's `parts`.
 */
export type MatrixChoice = MatrixFormat | 'mixed';

/** What loadModel's `weights` option asks for; 'auto' keeps each tensor as its file stores it. */
export type WeightsOption = 'auto' | 'f32' | 'bf16' | 'int8' | 'int4';
export const WEIGHTS_OPTIONS: readonly WeightsOption[] = ['auto', 'f32', 'bf16', 'int8', 'int4'];

/** What a matrix is for, which decides whether it may be narrow. */
export type MatrixRole = 'embed' | 'lmHead' | 'router' | 'kvB' | 'linear';

/** The format each matrix gets: `stored` lists its tensors' types in the file (absent: F32). */
export type FormatChooser = (role: MatrixRole, cols: number, stored: readonly (KeptType | undefined)[]) => MatrixChoice;

/** Bytes of one super-block (256 values) of Q4_K, Q5_K and Q6_K. */
export const SUPER_BLOCK_BYTES = { q4k: 144, q5k: 176, q6k: 210 } as const;
export type SuperBlockFormat = keyof typeof SUPER_BLOCK_BYTES;
/** The K-quant matrix formats, by the file type each keeps. */
const SUPER_BLOCK_FORMAT: Record<SuperBlockType, SuperBlockFormat> = { Q4_K: 'q4k', Q5_K: 'q5k', Q6_K: 'q6k' };
const SUPER_BLOCK_TYPE: Record<SuperBlockFormat, SuperBlockType> = { q4k: 'Q4_K', q5k: 'Q5_K', q6k: 'Q6_K' };
/** Whether `format` is a K-quant kept in its super-blocks. */
export const isSuperBlockFormat = (format: MatrixFormat): format is SuperBlockFormat => format in SUPER_BLOCK_BYTES;

/** Bytes of a rows × cols matrix in `format` (q8/q4: codes, then scales; q4k/q5k/q6k: super-blocks). */
export function matrixBytes(format: MatrixFormat, rows: number, cols: number): number {
  const n = rows * cols;
  switch (format) {
    case 'f32': return 4 * n;
    case 'bf16': case 'f16': return 2 * n;
    case 'q8': return n + n / 8;
    case 'q4': return n / 2 + n / 8;
    case 'q4k': case 'q5k': case 'q6k': return (n / 256) * SUPER_BLOCK_BYTES[format];
  }
}

/**
 * The formats for a `weights` option. Stay f32 always: the MoE router (its scores pick experts, a
 * discrete choice a rounding can flip) and kv_b_proj (absorbed attention multiplies by W_UK from
 * the other side, which only the f32 kernels do). Norms are vectors, always f32. Rows whose length
 * is not a multiple of 32 cannot be blocks of 32: int8/int4 keep them in f16. int4 keeps lm_head
 * in int8, as llama.cpp keeps its output matrix wider than Q4_0. These are the choices of our GGUF
 * writer too, so that a file written and read back is the model quantised at load, bit for bit.
 */
export function formatChooser(option: WeightsOption): FormatChooser {
  return (role, cols, stored) => {
    if (role === 'router' || role === 'kvB' || option === 'f32') return 'f32';
    if (option === 'bf16') return 'bf16';
    if (option === 'int8' || option === 'int4') {
      if (cols % 32 !== 0) return 'f16';
      return option === 'int8' || role === 'lmHead' ? 'q8' : 'q4';
    }
    // auto: as stored. Fused tensors stored alike stay one matrix (Q4_0 beside Q8_0 widens exactly
    // to q8); stored unalike, each keeps its own form as a part ('mixed'), unless all are f32.
    const forms = stored.map((t) => keptForm(t, cols));
    if (forms.every((f) => f === forms[0])) return forms[0];
    if (forms.every((f) => f === 'q8' || f === 'q4')) return 'q8';
    return forms.some((f) => f !== 'f32') ? 'mixed' : 'f32';
  };
}

/**
 * The form a tensor stored as `type`, in rows of `cols`, keeps under weights 'auto': its own, or
 * one it repacks into exactly (src/formats/repack.ts: Q3_K → q6k; Q5_0, IQ4_NL, IQ4_XS → q8).
 */
function keptForm(type: KeptType | undefined, cols: number): MatrixFormat {
  switch (type) {
    case 'Q4_K': case 'Q5_K': case 'Q6_K': return cols % 256 === 0 ? SUPER_BLOCK_FORMAT[type] : 'f32';
    case 'Q3_K': return cols % 256 === 0 ? 'q6k' : 'f32';
    case 'Q8_0': case 'Q5_0': case 'IQ4_NL': case 'IQ4_XS': return cols % 32 === 0 ? 'q8' : 'f32';
    case 'Q4_0': return cols % 32 === 0 ? 'q4' : 'f32';
    case 'F16': return 'f16';
    case 'BF16': return 'bf16';
    default: return 'f32';
  }
}

/** Checks a `weights` option: BAD_INPUT naming the choices. */
export function checkWeightsOption(option: unknown): WeightsOption {
  if (!WEIGHTS_OPTIONS.includes(option as WeightsOption)) {
    throw new MlaError('BAD_INPUT', `weights must be one of ${WEIGHTS_OPTIONS.map((o) => `'${o}'`).join(', ')}, got ${showValue(option)}`);
  }
  return option as WeightsOption;
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
  /** Qwen2: the inRows biases of wIn's outputs ([q | k | v]), else 0. */
  inBias: number;
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
  /** Bytes of the weights in their formats (weightBytes). */
  bytes: number;
  /** Where the weights' block starts, and its bytes (weightBlockBytes of the plan it was placed with). */
  block: number;
  blockBytes: number;
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
      if (a.latentNorm) s.set(p + 'self_attn.kv_a_layernorm.weight', [a.kvLoraRank]);
      s.set(p + 'self_attn.kv_b_proj.weight', [a.heads * (a.nopeDim + a.vDim), a.kvLoraRank]);
      s.set(p + 'self_attn.o_proj.weight', [d, a.heads * a.vDim]);
    } else {
      s.set(p + 'self_attn.q_proj.weight', [a.heads * a.headDim, d]);
      s.set(p + 'self_attn.k_proj.weight', [a.kvHeads * a.headDim, d]);
      s.set(p + 'self_attn.v_proj.weight', [a.kvHeads * a.vDim, d]);
      if (a.qkvBias) {
        s.set(p + 'self_attn.q_proj.bias', [a.heads * a.headDim]);
        s.set(p + 'self_attn.k_proj.bias', [a.kvHeads * a.headDim]);
        s.set(p + 'self_attn.v_proj.bias', [a.kvHeads * a.vDim]);
      }
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

/** Picks each matrix's format from its tensors' names (placed side by side), role and row length. */
export type WeightPlan = (names: readonly string[], role: MatrixRole, cols: number) => MatrixChoice;

/** The plan for a `weights` option (default 'auto') over a checkpoint's stored types (none: all F32). */
export function weightPlan(option: WeightsOption = 'auto', src?: TensorSource): WeightPlan {
  const choose = formatChooser(option);
  return (names, role, cols) => choose(role, cols, names.map((n) => src?.stored?.(n)));
}

/**
 * `plan` with each matrix's choice remembered. `settle()` lets go of `plan` (and the source whose
 * stored types it reads) and returns a plan that replays the choices made so far.
 */
export function recordedPlan(plan: WeightPlan): { plan: WeightPlan; settle(): WeightPlan } {
  const chosen = new Map<string, MatrixChoice>();
  const key = (names: readonly string[]) => names.join('\n');
  let source: WeightPlan | null = plan;
  return {
    plan: (names, role, cols) => {
      let f = chosen.get(key(names));
      if (f === undefined) {
        if (!source) throw new Error(`no recorded format for ${names.join(', ')}`);
        chosen.set(key(names), f = source(names, role, cols));
      }
      return f;
    },
    settle() { source = null; return this.plan; },
  };
}

/** A matrix of the model: its tensors (stacked by rows, in order), what it is for, whether it is in panels. */
interface MatrixGroup { names: string[]; role: MatrixRole; panels: boolean }

/** Every matrix of one layer, in the order placeWeights places them. */
function layerMatrices(c: ModelConfig, l: number): MatrixGroup[] {
  const p = `model.layers.${l}.`, a = c.attention, f = c.ffn[l];
  const g = (role: MatrixRole, panels: boolean, ...names: string[]) => ({ names: names.map((n) => p + n), role, panels });
  const out: MatrixGroup[] = [];
  if (a.kind === 'mla') {
    out.push(g('linear', true, a.qLoraRank ? 'self_attn.q_a_proj.weight' : 'self_attn.q_proj.weight', 'self_attn.kv_a_proj_with_mqa.weight'));
    if (a.qLoraRank) out.push(g('linear', true, 'self_attn.q_b_proj.weight'));
    out.push(g('kvB', false, 'self_attn.kv_b_proj.weight'));
  } else {
    out.push(g('linear', true, 'self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight'));
  }
  out.push(g('linear', true, 'self_attn.o_proj.weight'));
  const swiglu = (prefix: string) => [g('linear', true, prefix + 'gate_proj.weight', prefix + 'up_proj.weight'), g('linear', true, prefix + 'down_proj.weight')];
  if (f.kind === 'dense') out.push(...swiglu('mlp.'));
  else {
    out.push(g('router', true, 'mlp.gate.weight'));
    for (let e = 0; e < f.experts; e++) out.push(...swiglu(`mlp.experts.${e}.`));
    if (f.sharedIntermediate) out.push(...swiglu('mlp.shared_experts.'));
  }
  return out;
}

/** Sums over the model's tensors: numbers, bytes of the matrices (each aligned) and of the vectors. */
function tensorSums(c: ModelConfig, plan: WeightPlan): { numbers: number; bytes: number; matrixBytes: number; vectorBytes: number } {
  const shapes = expectedTensors(c);
  const t = { numbers: 0, bytes: 0, matrixBytes: 0, vectorBytes: 0 };
  for (const shape of shapes.values()) {
    t.numbers += count(shape);
    if (shape.length === 1) t.vectorBytes += count(shape) * 4;
  }
  t.bytes = t.vectorBytes;
  // e_score_correction_bias is read into the host, not placed.
  for (const [name, shape] of shapes) if (name.endsWith('.e_score_correction_bias')) t.vectorBytes -= count(shape) * 4;
  const matrix = (m: MatrixGroup): void => {
    const cols = shapes.get(m.names[0])![1], rows = m.names.reduce((r, n) => r + shapes.get(n)![0], 0);
    const choice = plan(m.names, m.role, cols);
    if (choice === 'mixed') return m.names.forEach((name) => matrix({ ...m, names: [name] }));
    const bytes = matrixBytes(choice, rows, cols);
    t.bytes += bytes;
    t.matrixBytes += alignUp(bytes, MATRIX_ALIGN);
  };
  matrix({ names: ['model.embed_tokens.weight'], role: 'embed', panels: false });
  if (!c.tieEmbeddings) matrix({ names: ['lm_head.weight'], role: 'lmHead', panels: true });
  for (let l = 0; l < c.layers; l++) layerMatrices(c, l).forEach(matrix);
  return t;
}

/** Bytes of the weights in memory, in the formats `plan` picks (default: all f32). */
export function weightBytes(c: ModelConfig, plan: WeightPlan = weightPlan('f32')): number {
  return tensorSums(c, plan).bytes;
}

/** Bytes of WebAssembly memory placeWeights allocates: the weights, their alignment, at most. */
export function weightBlockBytes(c: ModelConfig, plan: WeightPlan = weightPlan('f32')): number {
  const t = tensorSums(c, plan);
  return MATRIX_ALIGN + t.matrixBytes + t.vectorBytes;
}

/** How placeWeights makes q8/q4 blocks from f32 rows (the kernels' quantize_q8_rows / quantize_q4_rows, through ops). */
export interface Quantizer {
  /** Bytes of WebAssembly memory `quantize` needs at `staging` for rows of `cols` floats (a row at least). */
  stagingBytes: number;
  /** Rows × cols f32 at `staging` → codes at `q` and scales at `d`. */
  quantize(format: 'q8' | 'q4', staging: number, rows: number, cols: number, q: number, d: number): void;
}

/** f32 → bf16 bits, rounding to nearest even (NaN kept a NaN). */
function toBf16(v: Float32Array, out: Uint16Array): void {
  const u = new Uint32Array(v.buffer, v.byteOffset, v.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    out[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}

/** First index of a NaN or ±Inf among 16-bit floats whose exponent field is `expMask`, or −1. */
function firstNonfinite16(v: Uint16Array, expMask: number): number {
  for (let i = 0; i < v.length; i++) if ((v[i] & expMask) === expMask) return i;
  return -1;
}

/**
 * Check, allocate and fill. Throws before allocating anything if the checkpoint does not match.
 * `plan` picks each matrix's format (default: all f32); q8/q4 made from wider tensors need a
 * `quantizer`. `onProgress(done, total)` is called with 0 and then after each tensor, with bytes
 * placed so far.
 */
export function placeWeights(c: ModelConfig, src: TensorSource, heap: Heap,
  onProgress?: (done: number, total: number) => void, plan: WeightPlan = weightPlan('f32'), quantizer?: Quantizer): Weights {
  const shapes = checkTensors(c, src);
  const sums = tensorSums(c, plan);
  const bytes = sums.bytes;
  const block = heap.alloc(MATRIX_ALIGN + sums.matrixBytes + sums.vectorBytes, 'the weights');
  try {
    return fill();
  } catch (e) {
    heap.release(block, MATRIX_ALIGN + sums.matrixBytes + sums.vectorBytes);
    throw e;
  }

  function fill(): Weights {
    // Matrices from the first 4 KiB boundary on, each on a boundary; vectors after all of them.
    let nextMatrix = alignUp(block, MATRIX_ALIGN);
    let nextVector = nextMatrix + sums.matrixBytes;
    let done = 0;
    let staging = 0;
    onProgress?.(0, bytes);
    const nonFinite = (name: string, i: number, v: number | string) => new MlaError('NON_FINITE', `tensor ${name} holds ${v} at element ${i}`);
    const readF32 = (name: string, out: Float32Array) => {
      src.read(name, out);
      for (let i = 0; i < out.length; i++) if (!Number.isFinite(out[i])) throw nonFinite(name, i, out[i]);
    };
    const place = (name: string): number => {
      const n = count(shapes.get(name)!), ptr = nextVector;
      readF32(name, heap.f32(ptr, n));
      nextVector += n * 4;
      done += n * 4;
      onProgress?.(done, bytes);
      return ptr;
    };
    // One tensor's rows of a matrix in `format`, at row `r0` of a matrix of `rows` rows at ptr.
    const fillRows = (name: string, format: MatrixFormat, ptr: number, rows: number, r0: number, cols: number) => {
      const n = count(shapes.get(name)!), r = n / cols, stored = src.stored?.(name);
      if (format === 'f32') {
        readF32(name, heap.f32(ptr + r0 * cols * 4, n));
      } else if (format === 'bf16' || format === 'f16') {
        const out = new Uint16Array(heap.memory.buffer, ptr + r0 * cols * 2, n);
        if (stored === (format === 'f16' ? 'F16' : 'BF16')) {
          src.read16!(name, out);
          const i = firstNonfinite16(out, format === 'f16' ? 0x7c00 : 0x7f80);
          if (i >= 0) throw nonFinite(name, i, 'a NaN or infinity');
        } else {
          const v = new Float32Array(n);
          readF32(name, v);
          if (format === 'bf16') toBf16(v, out);
          else {
            for (let i = 0; i < n; i++) out[i] = f32ToF16Bits(v[i]);
            // Past ±65504 rounds to ±inf, which the f16 kernels do not widen (assembly/quant.ts).
            const i = firstNonfinite16(out, 0x7c00);
            if (i >= 0) {
              throw new MlaError('NON_FINITE', `tensor ${name} holds ${v[i]} at element ${i}, beyond f16's range: int8 and int4 keep `
                + `rows whose length is not a multiple of 32 in f16; load with weights 'bf16' or 'f32'`);
            }
          }
        }
      } else if (isSuperBlockFormat(format)) {
        const type = SUPER_BLOCK_TYPE[format], rb = (cols / 256) * SUPER_BLOCK_BYTES[format];
        if (stored !== type && !(stored === 'Q3_K' && format === 'q6k')) throw new Error(`placeWeights: ${format} is kept as stored, and ${name} is ${stored ?? 'F32'}`);
        const out = heap.u8(ptr + r0 * rb, r * rb);
        src.readSuperBlocks!(name, out);
        // The f16 super-block scales (Q4_K, Q5_K: d and dmin at 0, 2; Q6_K: d at 208) must be finite.
        const view = new DataView(out.buffer, out.byteOffset, out.length), at = format === 'q6k' ? [208] : [0, 2];
        for (let b = 0; b < out.length / SUPER_BLOCK_BYTES[format]; b++) {
          for (const o of at) {
            if ((view.getUint16(b * SUPER_BLOCK_BYTES[format] + o, true) & 0x7c00) === 0x7c00) throw nonFinite(name, b * 256, 'a super-block scale of NaN or infinity');
          }
        }
      } else {
        const codeBytes = format === 'q8' ? cols : cols / 2, nb = cols / 32;
        const q = ptr + r0 * codeBytes, d = ptr + rows * codeBytes + r0 * nb * 4;
        const repacked = stored === 'Q5_0' || stored === 'IQ4_NL' || stored === 'IQ4_XS'; // the source gives q8 codes
        if ((stored === 'Q8_0' || repacked) && format === 'q8' || stored === 'Q4_0' && format === 'q4') {
          src.readBlocks!(name, heap.u8(q, r * codeBytes), heap.f32(d, r * nb));
          // The q8 kernels take codes −127..127 (assembly/quant.ts); no Q8_0 quantiser writes −128.
          if (format === 'q8') heap.u8(q, r * codeBytes).forEach((b, i, v) => { if (b === 0x80) v[i] = 0x81; });
        } else if (stored === 'Q4_0' && format === 'q8') {
          // Exact: a Q4_0 code c stands for (c − 8)·d, an int8 code of the same block scale.
          const packed = new Uint8Array(r * cols / 2);
          src.readBlocks!(name, packed, heap.f32(d, r * nb));
          const out = new Int8Array(heap.memory.buffer, q, r * cols);
          for (let b = 0; b < r * nb; b++) {
            for (let j = 0; j < 16; j++) {
              const byte = packed[b * 16 + j];
              out[b * 32 + j] = (byte & 15) - 8;
              out[b * 32 + j + 16] = (byte >> 4) - 8;
            }
          }
        } else {
          if (!quantizer) throw new Error('placeWeights: q8/q4 from wider tensors needs a quantizer');
          const v = new Float32Array(n);
          readF32(name, v);
          const per = Math.max(1, Math.floor(quantizer.stagingBytes / (cols * 4)));
          if (!staging) staging = heap.alloc(quantizer.stagingBytes, 'quantising the weights');
          for (let i = 0; i < r; i += per) {
            const m = Math.min(per, r - i);
            heap.f32(staging, m * cols).set(v.subarray(i * cols, (i + m) * cols));
            quantizer.quantize(format, staging, m, cols, q + i * codeBytes, d + i * nb * 4);
          }
          // Q8_0 and Q4_0 keep each scale as f16 (the codes come from the f32 scale): the same here.
          const sc = heap.f32(d, r * nb);
          for (let i = 0; i < sc.length; i++) sc[i] = f16BitsToF32(f32ToF16Bits(sc[i]));
        }
        const scales = heap.f32(d, r * nb);
        for (let i = 0; i < scales.length; i++) if (!Number.isFinite(scales[i])) throw nonFinite(name, i * 32, `a block scale of ${scales[i]}`);
      }
      done += matrixBytes(format, r, cols);
      onProgress?.(done, bytes);
    };
    // Place a (fused) matrix, then rearrange it into column panels when f32 and wider than PANEL_COLS.
    const placeMatrix = (role: MatrixRole, panels: boolean, ...names: string[]): Matrix => {
      const cols = shapes.get(names[0])![1];
      const rows = names.reduce((r, name) => r + shapes.get(name)![0], 0);
      const format = plan(names, role, cols);
      if (format === 'mixed') {
        const parts = names.map((name) => placeMatrix(role, panels, name));
        return { ptr: parts[0].ptr, rows, cols, panelCols: cols, format, scales: 0, parts };
      }
      const ptr = nextMatrix;
      let r0 = 0;
      for (const name of names) {
        fillRows(name, format, ptr, rows, r0, cols);
        r0 += shapes.get(name)![0];
      }
      nextMatrix = alignUp(ptr + matrixBytes(format, rows, cols), MATRIX_ALIGN);
      const panelCols = panels && format === 'f32' ? panelWidth(cols) : cols;
      if (panelCols < cols) {
        const rowMajor = heap.f32(ptr, rows * cols).slice();
        const out = heap.f32(ptr, rows * cols);
        let o = 0;
        for (let c0 = 0; c0 < cols; c0 += panelCols) {
          const width = Math.min(panelCols, cols - c0);
          for (let r = 0; r < rows; r++, o += width) out.set(rowMajor.subarray(r * cols + c0, r * cols + c0 + width), o);
        }
      }
      const codeBytes = format === 'q8' ? cols : format === 'q4' ? cols / 2 : 0;
      return { ptr, rows, cols, panelCols, format, scales: codeBytes ? ptr + rows * codeBytes : 0 };
    };
    try {
      return placeAll();
    } finally {
      if (staging) heap.release(staging, quantizer!.stagingBytes);
    }

    function placeAll(): Weights {
      const embed = placeMatrix('embed', false, 'model.embed_tokens.weight');
      const finalNorm = place('model.norm.weight');
      const lmHead = c.tieEmbeddings ? embed : placeMatrix('lmHead', true, 'lm_head.weight');
      const a = c.attention;
      const layers: LayerWeights[] = [];
      for (let l = 0; l < c.layers; l++) {
        const p = `model.layers.${l}.`;
        const w = {} as LayerWeights;
        w.inputNorm = place(p + 'input_layernorm.weight');
        w.postNorm = place(p + 'post_attention_layernorm.weight');
        w.qNorm = w.kvNorm = w.inBias = 0;
        w.wqB = w.wkvB = w.wUK = w.wUV = null;
        if (a.kind === 'mla') {
          const qFirst = a.qLoraRank ? 'self_attn.q_a_proj.weight' : 'self_attn.q_proj.weight';
          w.wIn = placeMatrix('linear', true, p + qFirst, p + 'self_attn.kv_a_proj_with_mqa.weight');
          w.inRows = inputRows(c);
          if (a.qLoraRank) {
            w.qNorm = place(p + 'self_attn.q_a_layernorm.weight');
            w.wqB = placeMatrix('linear', true, p + 'self_attn.q_b_proj.weight');
          }
          w.kvNorm = a.latentNorm ? place(p + 'self_attn.kv_a_layernorm.weight') : 0;
          w.wkvB = placeMatrix('kvB', false, p + 'self_attn.kv_b_proj.weight');
          groupHeadRows(heap.f32(w.wkvB.ptr, w.wkvB.rows * w.wkvB.cols), a.heads, a.nopeDim, a.vDim, a.kvLoraRank);
          const dc = a.kvLoraRank, ukRows = a.heads * a.nopeDim;
          w.wUK = { ptr: w.wkvB.ptr, rows: ukRows, cols: dc, panelCols: dc, format: 'f32', scales: 0 };
          w.wUV = { ptr: w.wkvB.ptr + ukRows * dc * 4, rows: a.heads * a.vDim, cols: dc, panelCols: dc, format: 'f32', scales: 0 };
        } else {
          w.wIn = placeMatrix('linear', true, p + 'self_attn.q_proj.weight', p + 'self_attn.k_proj.weight', p + 'self_attn.v_proj.weight');
          w.inRows = inputRows(c);
          // Placed one after another: [q | k | v] biases, as wIn's rows.
          if (a.qkvBias) {
            w.inBias = place(p + 'self_attn.q_proj.bias');
            place(p + 'self_attn.k_proj.bias');
            place(p + 'self_attn.v_proj.bias');
          }
        }
        w.wo = placeMatrix('linear', true, p + 'self_attn.o_proj.weight');
        const f = c.ffn[l];
        w.wGateUp = w.wDown = null;
        w.moe = null;
        if (f.kind === 'dense') {
          w.wGateUp = placeMatrix('linear', true, p + 'mlp.gate_proj.weight', p + 'mlp.up_proj.weight');
          w.wDown = placeMatrix('linear', true, p + 'mlp.down_proj.weight');
        } else {
          const router = placeMatrix('router', true, p + 'mlp.gate.weight');
          let bias: Float32Array | null = null;
          if (f.method === 'noaux_tc') {
            const name = p + 'mlp.gate.e_score_correction_bias';
            bias = new Float32Array(f.experts);
            src.read(name, bias);
            if (!bias.every(Number.isFinite)) throw new MlaError('NON_FINITE', `tensor ${name} holds a non-finite value`);
          }
          const experts = Array.from({ length: f.experts }, (_, e) => ({
            gateUp: placeMatrix('linear', true, `${p}mlp.experts.${e}.gate_proj.weight`, `${p}mlp.experts.${e}.up_proj.weight`),
            down: placeMatrix('linear', true, `${p}mlp.experts.${e}.down_proj.weight`),
          }));
          const shared = f.sharedIntermediate > 0;
          const sharedGateUp = shared ? placeMatrix('linear', true, p + 'mlp.shared_experts.gate_proj.weight', p + 'mlp.shared_experts.up_proj.weight') : null;
          const sharedDown = shared ? placeMatrix('linear', true, p + 'mlp.shared_experts.down_proj.weight') : null;
          w.moe = { router, bias, experts, sharedGateUp, sharedDown };
        }
        layers.push(w);
      }
      return { embed, finalNorm, lmHead, layers, bytes, block, blockBytes: MATRIX_ALIGN + sums.matrixBytes + sums.vectorBytes };
    }
  }
}
