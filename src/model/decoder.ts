// The decoder's forward pass over a chunk of tokens, in the order of docs/mla.md §2 and §7:
// embedding → layers of [RMSNorm → attention → residual → RMSNorm → SwiGLU → residual]
// → final RMSNorm → lm_head. Every buffer is allocated once, in the constructor (the
// "run state"); running a chunk allocates nothing.
import { rotaryDim, type GroupedAttention, type MlaAttention, type ModelConfig, type MoeFfn } from '../formats/config.js';
import type { Heap } from '../host/heap.js';
import { ropeAmplitude, ropeFrequencies, softmaxScale } from './rope.js';
import { BLOCK, FINISH, INIT, type LatentFormat } from './op-calls.js';
import { actQuantBytes, attnScratchBytes, attnSegmentBytes, matmulPackBytes, type ScratchKernels } from './op-scratch.js';
import { Ops } from './ops.js';
import { type ThreadPool } from '../host/pool.js';
import type { Kernels } from '../host/kernels.js';
import type { KvCache } from './kv-cache.js';
import { routeToken } from './moe.js';
import { inputRows, MATRIX_ALIGN, type LayerWeights, type Matrix, type Weights } from './weights.js';

/** How MLA attention is computed: expand per-head K/V from the latent, or absorb W_UK/W_UV. */
export type AttentionPath = 'naive' | 'absorbed';

/** `count` rows of a forward pass, from row `row` on, at positions pos … of one cache. */
interface Part { cache: KvCache; pos: number; row: number; count: number }

/**
 * Tokens per forward chunk: prompts longer than this are run in several chunks. 128 rows put the
 * projections on the packed GEMM (matmul_nt uses unpacked dot tiles up to 64 rows), which prefills
 * faster than 64 for twice the scratch.
 */
export const CHUNK = 128;
/** Cached positions expanded at a time by naive MLA attention. */
const KEY_BLOCK = 64;
const F = 4; // bytes per f32

type ScratchName = 'ids' | 'x' | 'xn' | 'u' | 'proj' | 'q' | 'o' | 'gu' | 'logits' | 'cos' | 'sin' | 'freqs' |
  'attnM' | 'attnL' | 'attnScratch' | 'attnSeg' | 'kvExp' | 'qAbs' | 'oLat' | 'pack' | 'router' | 'xe' | 'ye' | 'act' |
  'kvNew' | 'kvWide' | 'qLat';

/** Bytes of matmul packing scratch one thread needs (a 64-byte multiple). */
export function packBytes(c: ModelConfig, k: ScratchKernels): number {
  const a = c.attention, H = a.heads, d = c.hidden;
  const mla = a.kind === 'mla' ? a : null;
  const maxInter = Math.max(...c.ffn.map((f) => f.kind === 'dense' ? f.intermediate : Math.max(f.intermediate, f.sharedIntermediate)));
  const maxExperts = Math.max(0, ...c.ffn.map((f) => f.kind === 'moe' ? f.experts : 0));
  // The largest (k, n) of any matmul we run decides the packing scratch.
  const shapes: [number, number][] = [[d, inputRows(c)], [H * a.vDim, d], [d, 2 * maxInter], [maxInter, d], [d, c.vocabSize], [d, maxExperts]];
  if (mla) {
    shapes.push([mla.qLoraRank ?? 1, H * (mla.nopeDim + mla.ropeDim)], [mla.kvLoraRank, H * (mla.nopeDim + mla.vDim)],
      [mla.nopeDim, mla.kvLoraRank], [mla.kvLoraRank, mla.vDim]);
  }
  return Math.ceil(Math.max(64, ...shapes.map(([kk, n]) => matmulPackBytes(k, kk, n))) / 64) * 64;
}

/**
 * Floats of each scratch buffer (the run state) for a chunk of CHUNK tokens, with matmul packing
 * scratch for `threads` threads.
 */
export function scratchSizes(c: ModelConfig, k: ScratchKernels, threads = 1): Record<ScratchName, number> {
  const a = c.attention, T = CHUNK, H = a.heads, d = c.hidden;
  const inRows = inputRows(c);
  const mla = a.kind === 'mla' ? a : null;
  const moes = c.ffn.filter((f): f is MoeFfn => f.kind === 'moe');
  const maxInter = Math.max(...c.ffn.map((f) => f.kind === 'dense' ? f.intermediate : Math.max(f.intermediate, f.sharedIntermediate)));
  const maxExperts = Math.max(0, ...moes.map((f) => f.experts));
  const qWidth = mla ? H * (mla.nopeDim + mla.ropeDim) : 0;
  const ropeDim = mla ? mla.ropeDim : rotaryDim(a as GroupedAttention);
  return {
    ids: T, x: T * d, xn: T * d, u: T * d, proj: T * inRows, q: T * qWidth, o: T * H * a.vDim,
    gu: T * 2 * maxInter, logits: T * c.vocabSize, cos: T * ropeDim / 2, sin: T * ropeDim / 2,
    freqs: ropeDim / 2, attnM: T * H, attnL: T * H, attnScratch: Math.ceil(attnScratchBytes(k, T * H) / F),
    // Decode's split by keys: H queries (absorbed MLA: one token's heads; MQA: the heads of the group).
    attnSeg: attnSegmentBytes(k, H, mla ? mla.kvLoraRank : a.vDim) / F,
    kvExp: mla ? KEY_BLOCK * H * (mla.nopeDim + mla.vDim) : 0,
    qAbs: mla ? T * H * (mla.kvLoraRank + mla.ropeDim) : 0,
    oLat: mla ? T * H * mla.kvLoraRank : 0,
    pack: threads * packBytes(c, k) / F,
    router: T * maxExperts, xe: moes.length ? T * d : 0, ye: moes.length ? T * d : 0,
    act: Math.ceil(actQuantBytes(T, maxLinearCols(c)) / F),
    // A narrow cache: new rows in f32 before they are stored, a block of rows widened for naive
    // attention, and the absorbed queries as int8 records (the largest record, int4's or int8's).
    kvNew: mla ? T * (mla.kvLoraRank + mla.ropeDim) : 0,
    kvWide: mla ? KEY_BLOCK * (mla.kvLoraRank + mla.ropeDim) : 0,
    qLat: mla ? T * H * k.latent_query_bytes(2, mla.kvLoraRank, mla.ropeDim) / F : 0,
  };
}

/** The longest input row of any linear layer: the activations q8 / q4 products quantise. */
export function maxLinearCols(c: ModelConfig): number {
  const a = c.attention;
  const maxInter = Math.max(...c.ffn.map((f) => f.kind === 'dense' ? f.intermediate : Math.max(f.intermediate, f.sharedIntermediate)));
  return Math.max(c.hidden, a.heads * a.vDim, maxInter, a.kind === 'mla' ? a.qLoraRank ?? 0 : 0);
}

/**
 * The scratch buffers (activations, the inputs of every matvec) start 2 KiB past a 4 KiB boundary,
 * half way between the weight matrices' (see MATRIX_ALIGN in weights.ts).
 */
const SCRATCH_PHASE = 2048;

/** Bytes of the block holding the scratch buffers of `sizes`, each on its own 4 KiB pages. */
export function scratchBytes(sizes: Record<ScratchName, number>): number {
  const pages = Object.values(sizes).reduce((sum, n) => sum + Math.ceil(Math.max(1, n) * F / MATRIX_ALIGN) * MATRIX_ALIGN, 0);
  return MATRIX_ALIGN + SCRATCH_PHASE + pages;
}

export class Decoder {
  /** Every kernel call, split across threads when there is a pool and the work is worth it. */
  readonly ops: Ops;
  readonly heap: Heap;
  readonly config: ModelConfig;
  readonly w: Weights;
  private readonly scale: number;
  private readonly ropeDim: number;
  private readonly ropeAmp: number;
  // The run state: byte offsets of scratch buffers sized for CHUNK tokens.
  private readonly s: Record<ScratchName, number>;
  // MoE routing of the current chunk: for each token, its experts and weights.
  private readonly routeExperts: Int32Array;
  private readonly routeWeights: Float32Array;
  // A view of the whole memory for copies, remade after the memory grows.
  private view: Float32Array | null = null;
  /**
   * Sees each layer's attention input (RMSNorm(h) · input_layernorm, [rows, hidden]) of every
   * forward pass, as a view valid during the call: MHA/GQA → MLA conversion calibrates on it.
   */
  attentionInputTap: ((layer: number, x: Float32Array) => void) | null = null;

  constructor(k: Kernels, heap: Heap, config: ModelConfig, weights: Weights, pool: ThreadPool | null = null) {
    this.heap = heap; this.config = config; this.w = weights;
    const c = config, a = c.attention, T = CHUNK;
    this.scale = softmaxScale(c);
    this.ropeDim = a.kind === 'mla' ? a.ropeDim : rotaryDim(a);
    this.ropeAmp = ropeAmplitude(c.yarn) * (c.ropeAttnFactor ?? 1);
    const moes = c.ffn.filter((f): f is MoeFfn => f.kind === 'moe');
    const maxTopK = Math.max(0, ...moes.map((f) => f.topK));
    this.routeExperts = new Int32Array(T * maxTopK);
    this.routeWeights = new Float32Array(T * maxTopK);
    const threads = pool?.threads ?? 1;
    const sizes = scratchSizes(c, k, threads);
    // One block; every buffer SCRATCH_PHASE past a 4 KiB boundary, the weight matrices on one.
    const block = heap.alloc(scratchBytes(sizes), 'the scratch buffers');
    let next = Math.ceil(block / MATRIX_ALIGN) * MATRIX_ALIGN + SCRATCH_PHASE;
    this.s = {} as Decoder['s'];
    for (const [name, n] of Object.entries(sizes)) {
      this.s[name as ScratchName] = next;
      next += Math.ceil(Math.max(1, n) * F / MATRIX_ALIGN) * MATRIX_ALIGN;
    }
    this.ops = new Ops(k, pool, this.s.pack, packBytes(c, k), this.s.attnSeg, sizes.attnSeg * F, this.s.act, sizes.act * F);
    heap.f32(this.s.freqs, this.ropeDim / 2).set(ropeFrequencies(this.ropeDim, c.ropeTheta, c.yarn, c.ropeFreqFactors));
  }

  /** A Float32Array over the whole memory, made again only after the memory grew. */
  private memoryF32(): Float32Array {
    const buffer = this.heap.memory.buffer;
    if (this.view?.buffer !== buffer) this.view = new Float32Array(buffer);
    return this.view;
  }

  /** y[T, W.rows] = x[T, W.cols] · Wᵀ, with row strides of x and y. */
  private linear(x: number, ldx: number, w: Matrix, y: number, ldy: number, T: number): void {
    this.ops.linear({ x: { ptr: x, stride: ldx }, w, y: { ptr: y, stride: ldy }, rows: T });
  }

  /** y = RMSNorm(x) · weight over the first `dim` values of T rows (row strides of x and y). */
  private rmsnorm(x: number, ldx: number, weight: number, y: number, ldy: number, T: number, dim: number): void {
    this.ops.rmsnorm({ x: { ptr: x, stride: ldx }, weight, y: { ptr: y, stride: ldy }, rows: T, dim, eps: this.config.rmsEps });
  }

  /** Rotate, in place, `heads` vectors of `dim` values (headStride floats apart) in each of T rows, from table float `at` on. */
  /** RoPE in the config's pairing: DeepSeek rotates adjacent pairs, Llama and MiniCPM3 the two halves. */
  private rope(x: number, stride: number, T: number, heads: number, headStride: number, dim: number, at: number): void {
    const s = this.s;
    this.ops.rope({ x: { ptr: x, stride }, rows: T, heads, headStride, dim, table: { cos: s.cos + at * F, sin: s.sin + at * F },
      style: this.config.ropeStyle });
  }

  /** Copy `n` floats from each of `rows` rows (strides in floats). */
  private copyRows(src: number, srcStride: number, dst: number, dstStride: number, rows: number, n: number): void {
    const m = this.memoryF32();
    for (let r = 0; r < rows; r++) {
      const from = src / F + r * srcStride;
      m.copyWithin(dst / F + r * dstStride, from, from + n);
    }
  }

  /**
   * Run T ≤ CHUNK tokens (ids already written at s.ids, validated) at positions pos … pos+T−1,
   * appending their keys/values to the cache. Computes the logits of all T rows, or of the last
   * one only; returns the byte offset of the first logits row computed.
   */
  runChunk(cache: KvCache, pos: number, T: number, path: AttentionPath, allLogits: boolean): number {
    return this.runRows([{ cache, pos, row: 0, count: T }], T, path, allLogits ? 0 : T - 1);
  }

  /**
   * One decode step for several sessions at once (ids written at s.ids, validated): row b is the
   * token of items[b] at its own position, appended to its own cache. Every linear layer runs once
   * over the B ≤ CHUNK rows, attention per item; returns the byte offset of the B logits rows.
   */
  runBatch(items: readonly { cache: KvCache; pos: number }[], path: AttentionPath): number {
    return this.runRows(items.map(({ cache, pos }, row) => ({ cache, pos, row, count: 1 })), items.length, path, 0);
  }

  /** The forward pass over R rows made of `parts` (each a run of one cache's positions); logits from row `first` on. */
  private runRows(parts: readonly Part[], R: number, path: AttentionPath, first: number): number {
    const { ops, s, config: c } = this;
    const d = c.hidden, half = this.ropeDim / 2;
    if (c.embedScale === 1) ops.embed(this.w.embed, s.ids, R, s.x);
    else this.scaled(c.embedScale, s.x, R * d, () => ops.embed(this.w.embed, s.ids, R, s.u), s.u);
    for (const p of parts) {
      ops.ropeTable({ freqs: s.freqs, half, pos0: p.pos, count: p.count, scale: this.ropeAmp,
        cos: s.cos + p.row * half * F, sin: s.sin + p.row * half * F });
    }
    for (let l = 0; l < c.layers; l++) {
      const lw = this.w.layers[l];
      // h += Attn(RMSNorm(h))
      this.rmsnorm(s.x, d, lw.inputNorm, s.xn, d, R, d);
      this.attentionInputTap?.(l, this.heap.f32(s.xn, R * d));
      if (c.attention.kind === 'mla') this.mlaAttention(c.attention, l, parts, R, path);
      else this.groupedAttention(c.attention, l, parts, R);
      this.residual(s.x, s.u, R * d);
      // h += FFN(RMSNorm(h))
      this.rmsnorm(s.x, d, lw.postNorm, s.xn, d, R, d);
      const f = c.ffn[l];
      if (f.kind === 'dense') this.swiglu(s.xn, lw.wGateUp!, lw.wDown!, f.intermediate, s.u, R);
      else this.moe(f, lw, R);
      this.residual(s.x, s.u, R * d);
    }
    // Final RMSNorm and lm_head, for the rows whose logits are wanted.
    const rows = R - first;
    const norm = () => this.rmsnorm(s.x + first * d * F, d, this.w.finalNorm, c.headScale === 1 ? s.xn : s.u, d, rows, d);
    if (c.headScale === 1) norm();
    else this.scaled(c.headScale, s.xn, rows * d, norm, s.u);
    this.linear(s.xn, d, this.w.lmHead, s.logits, c.vocabSize, rows);
    return s.logits;
  }

  /** h += branch, or h += residualScale · branch (MiniCPM3). */
  private residual(x: number, branch: number, n: number): void {
    const a = this.config.residualScale;
    if (a === 1) this.ops.add(x, branch, n);
    else this.ops.axpy(x, branch, a, n);
  }

  /** out[0, n) = alpha · what `write` puts at `tmp`. */
  private scaled(alpha: number, out: number, n: number, write: () => void, tmp: number): void {
    write();
    this.heap.f32(out, n).fill(0);
    this.ops.axpy(out, tmp, alpha, n);
  }

  /** out[T, d] = down(silu(gate(x)) ⊙ up(x)), with [gate | up] stored as one matrix. */
  private swiglu(x: number, wGateUp: Matrix, wDown: Matrix, inter: number, out: number, T: number): void {
    const { ops, s } = this;
    const d = this.config.hidden;
    this.linear(x, d, wGateUp, s.gu, 2 * inter, T);
    ops.swiglu({ gu: { ptr: s.gu, stride: 2 * inter }, out: { ptr: s.gu, stride: 2 * inter }, rows: T, n: inter });
    this.linear(s.gu, 2 * inter, wDown, out, d, T);
  }

  /**
   * MoE: u = shared_experts(x) + Σ_e w_e · expert_e(x). Tokens routed to the same expert are
   * gathered into one batch, so each chosen expert's weights are read once per chunk.
   */
  private moe(f: MoeFfn, lw: LayerWeights, T: number): void {
    const { ops, s } = this;
    const d = this.config.hidden, m = lw.moe!, E = f.experts, K = f.topK;
    if (m.sharedGateUp) this.swiglu(s.xn, m.sharedGateUp, m.sharedDown!, f.sharedIntermediate, s.u, T);
    else this.heap.f32(s.u, T * d).fill(0);
    this.linear(s.xn, d, m.router, s.router, E, T);
    const logits = this.heap.f32(s.router, T * E);
    for (let t = 0; t < T; t++) {
      routeToken(f, logits.subarray(t * E, (t + 1) * E), m.bias,
        this.routeExperts.subarray(t * K, (t + 1) * K), this.routeWeights.subarray(t * K, (t + 1) * K));
    }
    for (let e = 0; e < E; e++) {
      let n = 0;
      for (let i = 0; i < T * K; i++) {
        if (this.routeExperts[i] === e) this.copyRows(s.xn + Math.floor(i / K) * d * F, d, s.xe + n++ * d * F, d, 1, d);
      }
      if (n === 0) continue;
      this.swiglu(s.xe, m.experts[e].gateUp, m.experts[e].down, f.intermediate, s.ye, n);
      n = 0;
      for (let i = 0; i < T * K; i++) {
        if (this.routeExperts[i] === e) ops.axpy(s.u + Math.floor(i / K) * d * F, s.ye + n++ * d * F, this.routeWeights[i], d);
      }
    }
  }

  /** MLA (docs/mla.md §2 steps 1–4): reads s.xn, appends [c_kv ; k^R] to each part's cache, writes o_proj's output to s.u. */
  private mlaAttention(a: MlaAttention, l: number, parts: readonly Part[], R: number, path: AttentionPath): void {
    const { s } = this;
    const lw = this.w.layers[l];
    const d = this.config.hidden, H = a.heads, dc = a.kvLoraRank, dr = a.ropeDim, dn = a.nopeDim;
    const qHead = dn + dr, inRows = lw.inRows, half = dr / 2;
    const qIn = a.qLoraRank ?? H * qHead; // columns of the fused projection before [c_kv ; k_r]
    // One matmul: [c_q | c_kv | k_r] (or [q | c_kv | k_r] without query compression).
    this.linear(s.xn, d, lw.wIn, s.proj, inRows, R);
    // 1. Query: q = q_b_proj · RMSNorm(c_q), or q straight from q_proj.
    let q = s.proj, qStride = inRows;
    if (a.qLoraRank) {
      this.rmsnorm(s.proj, inRows, lw.qNorm, s.proj, inRows, R, a.qLoraRank);
      this.linear(s.proj, inRows, lw.wqB!, s.q, H * qHead, R);
      q = s.q; qStride = H * qHead;
    }
    this.rope(q + dn * F, qStride, R, H, qHead, dr, 0);
    // 2. Cache row of each token: [RMSNorm(c_kv) ; RoPE(k_r)], the only thing MLA keeps (a narrow
    // cache: made in f32, then stored narrow).
    for (const { cache, pos, row, count } of parts) {
      const narrow = cache.format !== 'f32';
      const row0 = narrow ? s.kvNew + row * (dc + dr) * F : cache.at(l, pos), rowStride = narrow ? dc + dr : cache.row;
      const proj = s.proj + row * inRows * F;
      if (a.latentNorm) this.rmsnorm(proj + qIn * F, inRows, lw.kvNorm, row0, rowStride, count, dc);
      else this.copyRows(proj + qIn * F, inRows, row0, rowStride, count, dc); // "qk_latent_layernorm": false
      this.copyRows(proj + (qIn + dc) * F, inRows, row0 + dc * F, rowStride, count, dr);
      this.rope(row0 + dc * F, rowStride, count, 1, dr, dr, row * half);
      if (narrow) {
        this.ops.latentStore({ format: cache.format as LatentFormat, f32: { ptr: row0, stride: dc + dr },
          narrow: { ptr: cache.at(l, pos), stride: cache.rowBytes }, rows: count, dc, dr });
      }
    }
    // 3–4. Attention over each part's positions 0 … pos+count−1, then u = o_proj · [o_1; …; o_H].
    if (path === 'naive') for (const p of parts) this.mlaNaive(a, l, p, q + p.row * qStride * F, qStride);
    else this.mlaAbsorbed(a, l, parts, R, q, qStride);
    this.linear(s.o, H * a.vDim, lw.wo, s.u, d, R);
  }

  /** Naive: expand k_i^C = W_UK_i · c_kv and v_i = W_UV_i · c_kv block by block, then ordinary attention. */
  private mlaNaive(a: MlaAttention, l: number, { cache, pos, row, count: T }: Part, q: number, qStride: number): void {
    const { s } = this;
    const H = a.heads, dc = a.kvLoraRank, dn = a.nopeDim, dv = a.vDim, kv = dn + dv;
    const qHead = dn + a.ropeDim, S = pos + T;
    // State of (head h, query t): m, l at [h·T + t]; accumulator = o[t, h, :]. Head h: queries at
    // q + h·qHead, keys [k_{j,h}^C ; k^R_j], values v_{j,h}. Initialised with the first key block,
    // finished (o = acc / l) with the last.
    const lat = dc + a.ropeDim;
    for (let j0 = 0; j0 < S; j0 += KEY_BLOCK) {
      const n = Math.min(KEY_BLOCK, S - j0);
      // A narrow cache's block of rows is widened to f32 first.
      let rows = cache.at(l, j0), stride = cache.row;
      if (cache.format !== 'f32') {
        this.ops.latentWiden({ format: cache.format, f32: { ptr: s.kvWide, stride: lat }, narrow: { ptr: rows, stride: cache.rowBytes },
          rows: n, dc, dr: a.ropeDim });
        rows = s.kvWide; stride = lat;
      }
      // kvExp[j, :] = [k_{j,1}^C … k_{j,H}^C (d_n each) ; v_{j,1} … v_{j,H} (d_v each)] = kv_b_proj · c_kv_j
      this.linear(rows, stride, this.w.layers[l].wkvB!, s.kvExp, H * kv, n);
      this.ops.attention({
        phases: (j0 === 0 ? INIT : 0) | BLOCK | (j0 + n === S ? FINISH : 0), items: H, perGroup: 1,
        queries: { ptr: q, stride: qStride, count: T, pos0: pos, group: 1, step: qHead * F },
        keys: { ptr: s.kvExp, stride: H * kv, dim: dn, count: n, pos0: j0, step: dn * F },
        sharedKeys: { ptr: rows + dc * F, stride, dim: a.ropeDim },
        values: { ptr: s.kvExp + H * dn * F, stride: H * kv, dim: dv, step: dv * F },
        scale: this.scale,
        state: { m: s.attnM, l: s.attnL, acc: { ptr: s.o + row * H * dv * F, stride: H * dv, step: dv * F }, scratch: s.attnScratch },
      });
    }
  }

  /**
   * Absorbed: q̃_i = W_UK_iᵀ · q_i^C, attention straight over the latent cache rows
   * (score = q̃_i · c_kv_j + q_i^R · k_j^R, all heads sharing each row), o_i = W_UV_i · õ_i.
   * The two per-head products run once over all R rows; attention once per part, over its cache.
   */
  private mlaAbsorbed(a: MlaAttention, l: number, parts: readonly Part[], R: number, q: number, qStride: number): void {
    const { s, ops } = this;
    const H = a.heads, dc = a.kvLoraRank, dr = a.ropeDim, dn = a.nopeDim, dv = a.vDim;
    const qHead = dn + dr, lat = dc + dr;
    const { wUK, wUV } = this.w.layers[l]; // W_UK_h: [d_n, d_c], W_UV_h: [d_v, d_c], head after head
    // qAbs[t, h, :] = [q̃_{t,h} (d_c) ; q_{t,h}^R (d_r)]: for each head h, q̃_h = q_h^C · W_UK_h.
    ops.matmul({ nt: false, m: R, k: dn, n: dc, batch: H, a: { ptr: q, stride: qStride, step: qHead * F },
      b: { ptr: wUK!.ptr, stride: dc, step: dn * dc * F }, c: { ptr: s.qAbs, stride: H * lat, step: lat * F } });
    for (let h = 0; h < H; h++) {
      this.copyRows(q + (h * qHead + dn) * F, qStride, s.qAbs + (h * lat + dc) * F, H * lat, R, dr);
    }
    // A part's T·H queries (query t·H + h at position pos + t) over its latent rows 0 … pos+T−1.
    // The latent part of each row is both key and value. An int8/int4 cache takes the queries
    // quantised too (latentQuery), a bf16 one the f32 queries.
    for (const { cache, pos, row, count: T } of parts) {
      const rows = cache.at(l, 0), f = cache.format;
      let queries = s.qAbs + row * H * lat * F, recordStride = lat;
      if (f === 'int8' || f === 'int4') {
        const bytes = ops.latentBytes(f, dc, dr).query;
        const records = s.qLat + row * H * bytes;
        ops.latentQuery({ format: f, f32: { ptr: queries, stride: lat }, narrow: { ptr: records, stride: bytes }, rows: T * H, dc, dr });
        queries = records; recordStride = bytes / F;
      }
      const stride = cache.rowBytes / F; // in 4-byte units, whatever the format
      ops.attention({
        phases: INIT | BLOCK | FINISH, items: 1, perGroup: 1,
        queries: { ptr: queries, stride: recordStride, count: T * H, pos0: pos, group: H },
        keys: { ptr: rows, stride, dim: dc, count: pos + T, pos0: 0 },
        sharedKeys: { ptr: rows + dc * F, stride, dim: dr },
        values: { ptr: rows, stride, dim: dc },
        latent: f === 'f32' ? undefined : f,
        scale: this.scale,
        state: { m: s.attnM, l: s.attnL, acc: { ptr: s.oLat + row * H * dc * F, stride: dc }, scratch: s.attnScratch },
      });
    }
    // o[t, h, :] = W_UV_h · õ_{t,h}
    ops.matmul({ nt: true, m: R, k: dc, n: dv, batch: H, a: { ptr: s.oLat, stride: H * dc, step: dc * F },
      b: { ptr: wUV!.ptr, stride: dc, step: dv * dc * F }, c: { ptr: s.o, stride: H * dv, step: dv * F } });
  }

  /** MHA / GQA / MQA (Llama layout): cache rows are [k of every KV head ; v of every KV head]. */
  private groupedAttention(a: GroupedAttention, l: number, parts: readonly Part[], R: number): void {
    const { s } = this;
    const lw = this.w.layers[l];
    const d = this.config.hidden, H = a.heads, G = a.kvHeads, hd = a.headDim, dv = a.vDim;
    const inRows = lw.inRows, perGroup = H / G;
    this.linear(s.xn, d, lw.wIn, s.proj, inRows, R); // [q | k | v]
    if (lw.inBias) for (let r = 0; r < R; r++) this.ops.add(s.proj + r * inRows * F, lw.inBias, inRows);
    this.rope(s.proj, inRows, R, H, hd, this.ropeDim, 0);
    this.rope(s.proj + H * hd * F, inRows, R, G, hd, this.ropeDim, 0);
    for (const { cache, pos, row, count: T } of parts) {
      const proj = s.proj + row * inRows * F, o = s.o + row * H * dv * F;
      this.copyRows(proj + H * hd * F, inRows, cache.at(l, pos), cache.row, T, G * (hd + dv));
      // Keys of group g at rows + g·hd, its values at rows + (G·hd + g·dv).
      const rows = cache.at(l, 0), S = pos + T;
      const keys = { ptr: rows, stride: cache.row, dim: hd, count: S, pos0: 0, step: hd * F };
      const values = { ptr: rows + G * hd * F, stride: cache.row, dim: dv, step: dv * F };
      const state = { m: s.attnM, l: s.attnL, scratch: s.attnScratch };
      if (T === 1) {
        // Decode: the heads of a group are its queries, reading their shared K/V rows together.
        this.ops.attention({
          phases: INIT | BLOCK | FINISH, items: G, perGroup: 1, keys, sharedKeys: null, values, scale: this.scale,
          queries: { ptr: proj, stride: hd, count: perGroup, pos0: pos, group: perGroup, step: perGroup * hd * F },
          state: { ...state, acc: { ptr: o, stride: dv, step: perGroup * dv * F } },
        });
      } else {
        // Head h: its T queries against group ⌊h / perGroup⌋'s keys and values.
        this.ops.attention({
          phases: INIT | BLOCK | FINISH, items: H, perGroup, keys, sharedKeys: null, values, scale: this.scale,
          queries: { ptr: proj, stride: inRows, count: T, pos0: pos, group: 1, step: hd * F },
          state: { ...state, acc: { ptr: o, stride: H * dv, step: dv * F } },
        });
      }
    }
    this.linear(s.o, H * dv, lw.wo, s.u, d, R);
  }

  /** Write ids into the ids buffer (already validated). */
  setIds(ids: ArrayLike<number>, from: number, T: number): void {
    const buf = this.heap.i32(this.s.ids, T);
    for (let t = 0; t < T; t++) buf[t] = ids[from + t];
  }
}
