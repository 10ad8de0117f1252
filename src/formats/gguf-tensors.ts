// A GGUF file's tensors under the Hugging Face names the model expects (src/model/weights.ts),
// read on demand. llama.cpp's converter renames, merges and reshapes tensors; each Hugging Face
// tensor is rebuilt here from pieces of the file's tensors, exactly (no value is recomputed):
//   - names: token_embd → model.embed_tokens, blk.N.attn_q_a → model.layers.N.self_attn.q_a_proj …
//   - ggml's ne is a PyTorch shape reversed: ne[0] is a row's length;
//   - MoE experts are stacked in one 3-D tensor per projection (ffn_gate_exps …): expert e is a
//     contiguous run of rows;
//   - deepseek2's newer MLA layout splits kv_b_proj into attn_k_b (each head's W_UK transposed:
//     ne [d_n, d_c, heads]) and attn_v_b (ne [d_c, d_v, heads]); kv_b_proj's rows are head by head
//     [W_UK_h (transposed back) ; W_UV_h];
//   - llama's converter permutes q_proj and k_proj rows per head for its rope (Hugging Face's
//     half-split pairs become adjacent pairs): row h·d + 2i + j of the file is row h·d + j·d/2 + i
//     of the original. The permutation is undone, row by row, which is exact for every type
//     (quantised blocks never cross rows), so the model and its logits are those of the original.
import { MlaError } from '../errors.js';
import { READ_TYPES } from './ggml-types.js';
import type { GgufFile, GgufTensorInfo } from './gguf.js';
import { decodeRow } from './quant-blocks.js';
import { isQ8Repacked, q3kToQ6k, Q8_REPACKED, toQ8 } from './repack.js';
import { halfToFloatBits as halfTable } from './safetensors.js';
import type { ByteFile } from './byte-file.js';
import type { KeptType, SuperBlockType, TensorSource } from './tensor-source.js';

/** Rows [row0, row0 + rows) of a tensor seen as a matrix of ne[0] columns, or one head of attn_k_b transposed. */
type Piece =
  | { t: GgufTensorInfo; kind: 'rows'; row0: number; rows: number; headDim?: number }
  | { t: GgufTensorInfo; kind: 'transposed'; head: number };

interface Virtual { shape: number[]; pieces: Piece[] }

export interface GgufLayout {
  arch: 'deepseek2' | 'llama' | 'qwen2' | 'phi3' | 'minicpm3';
  heads: number;
  kvHeads: number;
}

const cols = (t: GgufTensorInfo) => t.ne[0];
const rowsOf = (t: GgufTensorInfo) => t.ne.slice(1).reduce((a, b) => a * b, 1);
const rowBytes = (t: GgufTensorInfo) => t.bytes / Math.max(1, rowsOf(t));
const isQuant = (type: string) => type === 'Q8_0' || type === 'Q4_0';
/** Bytes of one super-block (256 values) of each K-quant kept as stored. */
const SUPER_BLOCK_BYTES: Record<SuperBlockType, number> = { Q4_K: 144, Q5_K: 176, Q6_K: 210 };
const isSuperBlock = (type: string) => Object.prototype.hasOwnProperty.call(SUPER_BLOCK_BYTES, type);
/** Q3_K is read as Q6_K super-blocks (repack.ts): 110 bytes in the file per 210 out. */
const Q3_K_BYTES = 110;
const isFloat = (type: string) => type === 'F32' || type === 'F16' || type === 'BF16';

/** ggml suffix → Hugging Face suffix, for the tensors that only change name. */
const COMMON: Record<string, string> = {
  attn_norm: 'input_layernorm', ffn_norm: 'post_attention_layernorm', attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj', ffn_up: 'mlp.up_proj', ffn_down: 'mlp.down_proj',
};
const DEEPSEEK2: Record<string, string> = {
  attn_q: 'self_attn.q_proj', attn_q_a: 'self_attn.q_a_proj', attn_q_a_norm: 'self_attn.q_a_layernorm',
  attn_q_b: 'self_attn.q_b_proj', attn_kv_a_mqa: 'self_attn.kv_a_proj_with_mqa', attn_kv_a_norm: 'self_attn.kv_a_layernorm',
  attn_kv_b: 'self_attn.kv_b_proj', ffn_gate_inp: 'mlp.gate',
  ffn_gate_shexp: 'mlp.shared_experts.gate_proj', ffn_up_shexp: 'mlp.shared_experts.up_proj', ffn_down_shexp: 'mlp.shared_experts.down_proj',
};
const LLAMA: Record<string, string> = { attn_v: 'self_attn.v_proj' };
/** qwen2, phi3 (files with q, k, v apart): rope pairs halves as Hugging Face's does, so q and k are not permuted; qwen2's have biases. */
const QWEN2: Record<string, string> = { attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj' };
const EXPERTS: Record<string, string> = { ffn_gate_exps: 'gate_proj', ffn_up_exps: 'up_proj', ffn_down_exps: 'down_proj' };
/** Rope scaling divisors: llama's, minicpm3's LongRoPE factors. Read into the config (gguf-model.ts), not weights. */
export const ROPE_FREQS = 'rope_freqs.weight';
export const ROPE_FACTORS = { short: 'rope_factors_short.weight', long: 'rope_factors_long.weight' };
const GLOBAL: Record<string, string> = { 'token_embd.weight': 'model.embed_tokens.weight', 'output_norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight' };

const whole = (t: GgufTensorInfo, headDim?: number): Virtual => ({
  shape: [...t.ne].reverse(), pieces: [{ t, kind: 'rows', row0: 0, rows: rowsOf(t), headDim }],
});

/** The Hugging Face tensors of a GGUF file, each as pieces of the file's tensors. */
export function mapTensors(gguf: GgufFile, layout: GgufLayout, fileName: string): Map<string, Virtual> {
  const out = new Map<string, Virtual>();
  const add = (name: string, v: Virtual) => {
    if (out.has(name)) throw new MlaError('BAD_CHECKPOINT', `${fileName}: two tensors map to ${name}`);
    out.set(name, v);
  };
  const bad = (msg: string) => new MlaError('BAD_SHAPE', `${fileName}: ${msg}`);
  const splitKvB = new Map<number, { k?: GgufTensorInfo; v?: GgufTensorInfo }>();
  for (const t of gguf.tensors.values()) {
    if (GLOBAL[t.name]) { add(GLOBAL[t.name], whole(t)); continue; }
    if (t.name === ROPE_FREQS && layout.arch === 'llama') continue;
    if ((t.name === ROPE_FACTORS.short || t.name === ROPE_FACTORS.long) && (layout.arch === 'minicpm3' || layout.arch === 'phi3')) continue;
    const m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(t.name);
    if (!m) { add(t.name, whole(t)); continue; }
    const l = Number(m[1]), kind = m[2], p = `model.layers.${l}.`;
    if (layout.arch === 'phi3' && (kind === 'attn_qkv' || kind === 'ffn_up') && m[3] === 'weight') {
      // [q; k; v] rows (heads·d, kvHeads·d, kvHeads·d), and [gate; up] rows (ff each).
      const rows = rowsOf(t), unit = kind === 'ffn_up' ? 2 : layout.heads + 2 * layout.kvHeads;
      if (t.ne.length !== 2 || rows % unit) throw bad(`${t.name} [${t.ne}] does not split into ${kind === 'ffn_up' ? 'gate and up halves' : `${layout.heads} + 2·${layout.kvHeads} heads`}`);
      const r = rows / unit;
      const parts: [string, number][] = kind === 'ffn_up' ? [['mlp.gate_proj', r], ['mlp.up_proj', r]]
        : [['self_attn.q_proj', layout.heads * r], ['self_attn.k_proj', layout.kvHeads * r], ['self_attn.v_proj', layout.kvHeads * r]];
      let row0 = 0;
      for (const [name, n] of parts) {
        add(`${p}${name}.weight`, { shape: [n, cols(t)], pieces: [{ t, kind: 'rows', row0, rows: n }] });
        row0 += n;
      }
      continue;
    }
    const plain = COMMON[kind] ?? (layout.arch === 'llama' ? LLAMA[kind] : layout.arch === 'qwen2' || layout.arch === 'phi3' ? QWEN2[kind] : DEEPSEEK2[kind]);
    if (plain && m[3] === 'weight') { add(`${p}${plain}.weight`, whole(t)); continue; }
    if (layout.arch === 'qwen2' && QWEN2[kind] && m[3] === 'bias') { add(`${p}${QWEN2[kind]}.bias`, whole(t)); continue; }
    if (layout.arch === 'llama' && (kind === 'attn_q' || kind === 'attn_k') && m[3] === 'weight') {
      const heads = kind === 'attn_q' ? layout.heads : layout.kvHeads;
      const rows = rowsOf(t);
      if (t.ne.length !== 2 || rows % heads || (rows / heads) % 2) throw bad(`${t.name} [${t.ne}] does not split into ${heads} heads of an even size`);
      add(`${p}self_attn.${kind === 'attn_q' ? 'q' : 'k'}_proj.weight`, whole(t, rows / heads));
      continue;
    }
    if (layout.arch === 'deepseek2' && kind === 'exp_probs_b' && m[3] === 'bias') { add(`${p}mlp.gate.e_score_correction_bias`, whole(t)); continue; }
    if (layout.arch === 'deepseek2' && EXPERTS[kind] && m[3] === 'weight') {
      if (t.ne.length !== 3) throw bad(`${t.name} is [${t.ne}], not [columns, rows, experts]`);
      const [c, r, experts] = t.ne;
      for (let e = 0; e < experts; e++) add(`${p}mlp.experts.${e}.${EXPERTS[kind]}.weight`, { shape: [r, c], pieces: [{ t, kind: 'rows', row0: e * r, rows: r }] });
      continue;
    }
    if (layout.arch === 'deepseek2' && (kind === 'attn_k_b' || kind === 'attn_v_b') && m[3] === 'weight') {
      const s = splitKvB.get(l) ?? {};
      s[kind === 'attn_k_b' ? 'k' : 'v'] = t;
      splitKvB.set(l, s);
      continue;
    }
    add(t.name, whole(t)); // not a tensor of this architecture: checkTensors names it
  }
  for (const [l, { k, v }] of splitKvB) {
    const name = `model.layers.${l}.self_attn.kv_b_proj.weight`;
    // Files of some llama.cpp versions hold attn_kv_b as well as the split: it is used, the split ignored.
    if (out.has(name)) continue;
    if (!k || !v) throw new MlaError('MISSING_TENSOR', `${fileName}: layer ${l} has ${k ? 'attn_k_b' : 'attn_v_b'} without ${k ? 'attn_v_b' : 'attn_k_b'}`);
    if (k.ne.length !== 3 || v.ne.length !== 3 || k.ne[2] !== v.ne[2] || k.ne[1] !== v.ne[0]) {
      throw bad(`${k.name} [${k.ne}] and ${v.name} [${v.ne}] are not [d_n, d_c, heads] and [d_c, d_v, heads]`);
    }
    const [dn, dc, heads] = k.ne, dv = v.ne[1];
    const pieces: Piece[] = [];
    for (let h = 0; h < heads; h++) {
      pieces.push({ t: k, kind: 'transposed', head: h }, { t: v, kind: 'rows', row0: h * dv, rows: dv });
    }
    add(name, { shape: [heads * (dn + dv), dc], pieces });
  }
  return out;
}

/** Bytes of raw rows read at a time. */
const CHUNK = 4 << 20;

/** A TensorSource over a parsed GGUF file. Types outside READ_TYPES are refused here, naming each tensor. */
export function ggufTensorSource(file: ByteFile, gguf: GgufFile, layout: GgufLayout): TensorSource {
  const map = mapTensors(gguf, layout, file.name);
  const unread = [...new Set([...map.values()].flatMap((v) => v.pieces.map((p) => p.t)))]
    .filter((t) => !READ_TYPES.includes(t.type)).map((t) => `"${t.name}" is ${t.type}`);
  if (unread.length) {
    throw new MlaError('UNSUPPORTED_DTYPE', `${file.name}: ${unread.length} tensor(s) have a type that is not read ` +
      `(only ${READ_TYPES.join(', ')}): ${unread.slice(0, 8).join(', ')}${unread.length > 8 ? ' …' : ''}`);
  }
  const get = (name: string): Virtual => {
    const v = map.get(name);
    if (!v) throw new MlaError('MISSING_TENSOR', `no tensor "${name}" in ${file.name}`);
    return v;
  };
  const count = (v: Virtual) => v.shape.reduce((a, b) => a * b, 1);
  const checkOut = (name: string, v: Virtual, n: number) => {
    if (n !== count(v)) throw new MlaError('BAD_INPUT', `tensor "${name}" has ${count(v)} elements, output buffer has ${n}`);
  };

  /** Visit a rows piece in chunks: raw bytes of file rows [g, g + n) and the Hugging Face row of each. */
  const eachChunk = (p: Extract<Piece, { kind: 'rows' }>, visit: (raw: Uint8Array, n: number, hfRow: (i: number) => number) => void) => {
    const rb = rowBytes(p.t);
    const step = Math.max(1, Math.floor(CHUNK / Math.max(1, rb)));
    for (let g = 0; g < p.rows; g += step) {
      const n = Math.min(step, p.rows - g);
      const raw = new Uint8Array(n * rb);
      file.read(p.t.begin + (p.row0 + g) * rb, raw);
      const d = p.headDim;
      visit(raw, n, d === undefined ? (i) => g + i : (i) => {
        const r = g + i, h = Math.floor(r / d), w = r % d;
        return h * d + (w & 1) * (d / 2) + (w >> 1);
      });
    }
  };

  /** One head of attn_k_b, [d_c rows × d_n cols] in the file, as f32. */
  const headF32 = (t: GgufTensorInfo, head: number): Float32Array => {
    const [dn, dc] = t.ne, rb = rowBytes(t);
    const raw = new Uint8Array(dc * rb);
    file.read(t.begin + head * dc * rb, raw);
    const x = new Float32Array(dn * dc);
    for (let r = 0; r < dc; r++) decodeRow(t.type, raw, r * rb, dn, x, r * dn);
    return x;
  };

  /**
   * Tensor `name` into `out`, piece by piece: a transposed head from `head` (its d_c × d_n values in
   * file order), a run of rows through `rows` (at element `base`, rows of `c` values).
   */
  const fill = (name: string, out: Float32Array | Uint16Array,
    head: (p: Extract<Piece, { kind: 'transposed' }>) => ArrayLike<number>,
    rows: (p: Extract<Piece, { kind: 'rows' }>, base: number, c: number) => void) => {
    const v = get(name);
    checkOut(name, v, out.length);
    const c = v.shape[v.shape.length - 1];
    let base = 0;
    for (const p of v.pieces) {
      if (p.kind === 'transposed') {
        const [dn, dc] = p.t.ne, x = head(p);
        for (let i = 0; i < dn; i++) for (let j = 0; j < dc; j++) out[base + i * dc + j] = x[j * dn + i];
        base += dn * dc;
      } else {
        rows(p, base, c);
        base += p.rows * c;
      }
    }
  };

  return {
    names: () => map.keys(),
    shape: (name) => map.get(name)?.shape,
    stored: (name) => {
      const v = map.get(name);
      if (!v) return undefined;
      const types = new Set(v.pieces.map((p) => p.t.type));
      const [type] = types;
      // Blocks run along a file row: a transposed head (attn_k_b) can only be read widened.
      if (types.size > 1 || (!isFloat(type) && v.pieces.some((p) => p.kind === 'transposed'))) return 'F32';
      if (type === 'Q5_1') return 'F32'; // affine: no symmetric format holds it, read widened only
      return type as KeptType;
    },
    read: (name, out) => fill(name, out, (p) => headF32(p.t, p.head), (p, base, c) => {
      const rb = rowBytes(p.t);
      eachChunk(p, (raw, n, hfRow) => {
        for (let i = 0; i < n; i++) decodeRow(p.t.type, raw, i * rb, c, out, base + hfRow(i) * c);
      });
    }),
    read16: (name, out) => {
      const check = (p: Piece) => {
        if (p.t.type !== 'F16' && p.t.type !== 'BF16') {
          throw new MlaError('UNSUPPORTED_DTYPE', `${file.name}: tensor "${name}" is read from ${p.t.name}, which is ${p.t.type}, not 16-bit`);
        }
      };
      fill(name, out, (p) => {
        check(p);
        const [dn, dc] = p.t.ne, raw = new Uint16Array(dn * dc);
        file.read(p.t.begin + p.head * dn * dc * 2, new Uint8Array(raw.buffer));
        return raw;
      }, (p, base, c) => {
        check(p);
        eachChunk(p, (raw, n, hfRow) => {
          const u16 = new Uint16Array(raw.buffer, raw.byteOffset, n * c);
          for (let i = 0; i < n; i++) out.set(u16.subarray(i * c, (i + 1) * c), base + hfRow(i) * c);
        });
      });
    },
    readSuperBlocks: (name, out) => {
      const v = get(name);
      const c = v.shape[v.shape.length - 1], type = v.pieces[0].t.type;
      const q3 = type === 'Q3_K';
      if (v.shape.length !== 2 || !(isSuperBlock(type) || q3) || c % 256 || v.pieces.some((p) => p.t.type !== type || p.kind !== 'rows')) {
        throw new MlaError('UNSUPPORTED_DTYPE', `${file.name}: tensor "${name}" is not stored as Q3_K, Q4_K, Q5_K or Q6_K rows`);
      }
      const blocks = c / 256, rb = blocks * (q3 ? SUPER_BLOCK_BYTES.Q6_K : SUPER_BLOCK_BYTES[type as SuperBlockType]);
      if (out.length !== v.shape[0] * rb) {
        throw new MlaError('BAD_INPUT', `readSuperBlocks: tensor "${name}" needs ${v.shape[0] * rb} bytes, got ${out.length}`);
      }
      let base = 0;
      for (const p of v.pieces) {
        if (p.kind !== 'rows') continue;
        eachChunk(p, (raw, rows, hfRow) => {
          for (let i = 0; i < rows; i++) {
            const o = (base + hfRow(i)) * rb;
            if (!q3) out.set(raw.subarray(i * rb, (i + 1) * rb), o);
            else for (let b = 0; b < blocks; b++) q3kToQ6k(raw, (i * blocks + b) * Q3_K_BYTES, out, o + b * SUPER_BLOCK_BYTES.Q6_K);
          }
        });
        base += p.rows;
      }
    },
    readBlocks: (name, q, d) => {
      const v = get(name);
      const c = v.shape[v.shape.length - 1], n = count(v);
      const type = v.pieces[0].t.type;
      const repacked = isQ8Repacked(type);
      if (v.shape.length !== 2 || !(isQuant(type) || repacked) || v.pieces.some((p) => p.t.type !== type || p.kind !== 'rows')) {
        throw new MlaError('UNSUPPORTED_DTYPE', `${file.name}: tensor "${name}" is not stored as Q8_0, Q4_0, Q5_0, IQ4_NL or IQ4_XS rows`);
      }
      const qRow = type === 'Q4_0' ? c / 2 : c, blockBytes = type === 'Q8_0' ? 34 : 18, codes = blockBytes - 2;
      if (q.length !== (n / c) * qRow || d.length !== n / 32) {
        throw new MlaError('BAD_INPUT', `readBlocks: tensor "${name}" needs ${(n / c) * qRow} code bytes and ${n / 32} scales, got ${q.length} and ${d.length}`);
      }
      const half = new Float32Array(1), bits = new Uint32Array(half.buffer);
      const table = halfTable();
      const codes8 = new Int8Array(q.buffer, q.byteOffset, q.length);
      let base = 0;
      for (const p of v.pieces) {
        if (p.kind !== 'rows') continue;
        eachChunk(p, (raw, rows, hfRow) => {
          for (let i = 0; i < rows; i++) {
            const r = base + hfRow(i);
            if (repacked) {
              const { bytes, values } = Q8_REPACKED[type];
              toQ8(type, raw, i * (c / values) * bytes, c, codes8, r * c, d, r * (c / 32));
              continue;
            }
            for (let b = 0; b < c / 32; b++) {
              const at = (i * (c / 32) + b) * blockBytes;
              bits[0] = table[raw[at] | (raw[at + 1] << 8)];
              d[r * (c / 32) + b] = half[0];
              q.set(raw.subarray(at + 2, at + 2 + codes), r * qRow + b * codes);
            }
          }
        });
        base += p.rows;
      }
    },
  };
}
