// Writes a model as a GGUF file that llama.cpp loads: the names, shapes, layouts and metadata keys
// its converter (convert_hf_to_gguf.py) writes for deepseek2 and llama, the tokenizer from
// tokenizer.json, and each matrix in the type asked for. The inverse of gguf-tensors.ts:
//   - deepseek2: experts stacked into ffn_{gate,up,down}_exps; kv_b_proj split into attn_k_b
//     (each head's W_UK transposed) and attn_v_b with head_count_kv = 1 (llama.cpp's MLA layout),
//     or kept whole as attn_kv_b (the older layout);
//   - llama: q_proj and k_proj rows permuted per head for llama.cpp's rope (adjacent pairs).
// Types: vectors, the MoE router and its bias stay F32 (as llama.cpp's converter keeps them);
// matrices whose rows are not a multiple of 32 cannot be Q8_0/Q4_0 and become F16 (the converter's
// fallback); in quantised files kv_b_proj (attn_kv_b, or attn_k_b and attn_v_b) stays F32, as
// loadModel keeps it (and llama.cpp 3.21.1 aborts on a quantised attn_k_b), and with Q4_0 the output
// matrix is Q8_0; names in `keep` stay F32.
import { MlaError } from '../errors.js';
import { rotaryDim, type ModelConfig } from './config.js';
import { TYPE_ID } from './ggml-types.js';
import { PRE_TOKENIZERS } from './gguf-tokenizer.js';
import { parseGenerationConfig } from './tokenizer.js';
import { f32ToBf16Bits, f32ToF16Bits, quantizeQ4_0, quantizeQ8_0 } from './quant-blocks.js';
import type { StoredType, TensorSource } from './tensor-source.js';

export interface GgufWriteOptions {
  /** The type of the matrices (default F32). */
  type?: StoredType;
  /** Hugging Face tensor names kept F32 whatever `type` says. */
  keep?: string[];
  /** deepseek2 only: 'split' (attn_k_b/attn_v_b, llama.cpp's current layout; default) or 'kv_b'. */
  mlaLayout?: 'split' | 'kv_b';
  /** general.name. */
  name?: string;
}

export interface GgufTokenizerInput {
  tokenizerJson: unknown;
  tokenizerConfig?: unknown;
  chatTemplate?: string | null;
  /** generation_config.json: its sampling defaults become llama.cpp's general.sampling.* keys. */
  generationConfig?: unknown;
}

/**
 * generation_config.json's sampling defaults as llama.cpp's general.sampling.* keys (gguf-py's
 * Keys.General.SAMPLING_*), which llama.cpp applies when the user sets none: do_sample false is
 * temp 0 (greedy).
 */
function samplingKvs(generationConfig: unknown): Kv[] {
  const g = parseGenerationConfig(generationConfig);
  const kvs: Kv[] = [];
  const temp = g.doSample ? g.temperature : 0;
  if (temp !== undefined) kvs.push(['general.sampling.temp', 'f32', temp]);
  if (g.doSample && g.topK !== undefined) kvs.push(['general.sampling.top_k', 'i32', g.topK]);
  if (g.doSample && g.topP !== undefined) kvs.push(['general.sampling.top_p', 'f32', g.topP]);
  if (g.repetitionPenalty !== undefined) kvs.push(['general.sampling.penalty_repeat', 'f32', g.repetitionPenalty]);
  return kvs;
}

interface Planned {
  name: string;
  /** The Hugging Face tensors it is made of (what `keep` names). */
  from: string[];
  ne: number[];
  type: StoredType;
  /** The tensor's values in file order (ne[0] fastest). */
  values: () => Float32Array;
  /** Offset from the data section. */
  offset: number;
  bytes: number;
}

export interface GgufPlan {
  header: Uint8Array;
  tensors: Planned[];
  /** Bytes of the whole file. */
  size: number;
}

const ALIGN = 32;
const FILE_TYPE: Record<StoredType, number> = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7, BF16: 32 };
const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

function bytesOf(type: StoredType, n: number): number {
  return type === 'F32' ? 4 * n : type === 'F16' || type === 'BF16' ? 2 * n : type === 'Q8_0' ? (n / 32) * 34 : (n / 32) * 18;
}

/** Encodes f32 values as `type` into `out` at `at`. */
export function encodeValues(type: StoredType, x: Float32Array, out: Uint8Array, at = 0): void {
  const view = new DataView(out.buffer, out.byteOffset);
  if (type === 'F32') for (let i = 0; i < x.length; i++) view.setFloat32(at + 4 * i, x[i], true);
  else if (type === 'F16') for (let i = 0; i < x.length; i++) view.setUint16(at + 2 * i, f32ToF16Bits(x[i]), true);
  else if (type === 'BF16') for (let i = 0; i < x.length; i++) view.setUint16(at + 2 * i, f32ToBf16Bits(x[i]), true);
  else if (type === 'Q8_0') quantizeQ8_0(x, out, at);
  else quantizeQ4_0(x, out, at);
}

// ---------------------------------------------------------------------------------------------
// Metadata encoding

type Kv = [key: string, type: 'u32' | 'i32' | 'f32' | 'bool' | 'str' | 'strs' | 'i32s' | 'f32s', value: unknown];

class Bytes {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      bigger.set(this.buf.subarray(0, this.length));
      this.buf = bigger;
      this.view = new DataView(bigger.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  // room() may replace buf and view: take the offset first, then the (new) view.
  u32(v: number) { const at = this.room(4); this.view.setUint32(at, v, true); }
  i32(v: number) { const at = this.room(4); this.view.setInt32(at, v, true); }
  u64(v: number) { const at = this.room(8); this.view.setUint32(at, v % 2 ** 32, true); this.view.setUint32(at + 4, Math.floor(v / 2 ** 32), true); }
  f32(v: number) { const at = this.room(4); this.view.setFloat32(at, v, true); }
  u8(v: number) { const at = this.room(1); this.view.setUint8(at, v); }
  str(s: string) { const b = new TextEncoder().encode(s); this.u64(b.length); const at = this.room(b.length); this.buf.set(b, at); }
  pad() { this.room(alignUp(this.length) - this.length); }
  bytes() { return this.buf.slice(0, this.length); }
}

const KV_TYPE = { u32: 4, i32: 5, f32: 6, bool: 7, str: 8 } as const;

function writeKv(b: Bytes, [key, type, value]: Kv): void {
  b.str(key);
  switch (type) {
    case 'u32': case 'i32': case 'f32': case 'bool': case 'str':
      b.u32(KV_TYPE[type]);
      if (type === 'u32') b.u32(value as number);
      else if (type === 'i32') b.i32(value as number);
      else if (type === 'f32') b.f32(value as number);
      else if (type === 'bool') b.u8(value ? 1 : 0);
      else b.str(value as string);
      return;
    default: {
      const list = value as ArrayLike<unknown>;
      b.u32(9);
      b.u32(type === 'strs' ? 8 : type === 'i32s' ? 5 : 6);
      b.u64(list.length);
      for (let i = 0; i < list.length; i++) {
        if (type === 'strs') b.str(list[i] as string);
        else if (type === 'i32s') b.i32(list[i] as number);
        else b.f32(list[i] as number);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer: tokenizer.json → tokenizer.ggml.*

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const CASELESS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
const CASE_SPELLED = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

/** The llama.cpp pre-tokenizer name whose regexes are tokenizer.json's, or null. */
function preTokenizerName(pre: unknown, hasMerges: boolean): string | null {
  const splits: string[] = [];
  let byteLevelRegex = false;
  const visit = (p: unknown): boolean => {
    if (!isObject(p)) return p === null || p === undefined;
    if (p.type === 'Sequence' && Array.isArray(p.pretokenizers)) return p.pretokenizers.every(visit);
    if (p.type === 'Split' && isObject(p.pattern) && typeof p.pattern.Regex === 'string' && p.behavior === 'Isolated' && !p.invert) {
      splits.push(p.pattern.Regex);
      return true;
    }
    if (p.type === 'ByteLevel') { byteLevelRegex ||= p.use_regex !== false; return true; }
    if (p.type === 'Digits' && p.individual_digits === true) { splits.push('\\p{N}'); return true; }
    return false;
  };
  if (!visit(pre)) return null;
  if (byteLevelRegex) splits.push(PRE_TOKENIZERS['gpt-2'][0]);
  // tokenizer.json writes the contractions case-insensitively, (?i:'s|…); llama.cpp's regexes spell
  // each case out, as its regex engine has no (?i:).
  for (let i = 0; i < splits.length; i++) splits[i] = splits[i].replace(CASELESS, CASE_SPELLED);
  // Without merges every byte is its own token, however the text is split.
  if (splits.length === 0) return hasMerges ? null : 'gpt-2';
  for (const [name, regexes] of Object.entries(PRE_TOKENIZERS)) {
    if (regexes.length === splits.length && regexes.every((r, i) => r === splits[i])) return name;
  }
  return null;
}

/**
 * Whether a SentencePiece tokenizer.json puts '▁' before the text (llama.cpp's add_space_prefix,
 * which it does at the start and after each special token, as a normalizer does for each piece of
 * text between special tokens): the normalizer Prepend('▁') + Replace(' ', '▁') of Llama 2's,
 * Mistral's and Phi-3's files, or Replace alone. Other forms are refused.
 */
function spmSpacePrefix(json: Record<string, unknown>): boolean {
  const n = json.normalizer;
  const replace = (x: unknown) => isObject(x) && x.type === 'Replace' && isObject(x.pattern) && x.pattern.String === ' ' && x.content === '▁';
  const prepend = (x: unknown) => isObject(x) && x.type === 'Prepend' && x.prepend === '▁';
  if (json.pre_tokenizer === null || json.pre_tokenizer === undefined) {
    if (replace(n)) return false;
    if (isObject(n) && n.type === 'Sequence' && Array.isArray(n.normalizers) && n.normalizers.length === 2 && prepend(n.normalizers[0]) && replace(n.normalizers[1])) return true;
  }
  throw new MlaError('BAD_INPUT', 'tokenizer.json: a SentencePiece (byte-fallback BPE) tokenizer is written with the normalizer Prepend("▁") + Replace(" ", "▁") and no pre_tokenizer, as Llama 2\'s files have it; this one differs');
}

/**
 * SentencePiece scores that make llama.cpp's SPM tokenizer (it merges the adjacent pair whose
 * merged text is the highest-scoring token, leftmost first) merge as tokenizer.json's BPE does
 * (lowest-ranked merge first): each token scores minus the rank of its first merge. That holds when
 * a token's merges are ranked together and every token two others make has a merge, as in files
 * converted from SentencePiece; others are refused (they would tokenize differently there).
 */
function spmScores(tokens: string[], types: Int32Array, merges: string[], bad: (msg: string) => MlaError): Float32Array {
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => { if (types[i] === 1 && !ids.has(t)) ids.set(t, i); });
  const first = new Map<string, number>(), last = new Map<string, number>();
  merges.forEach((m, rank) => {
    const [a, b, extra] = m.split(' ');
    if (b === undefined || extra !== undefined) throw bad(`merge ${JSON.stringify(m)} is not two tokens`);
    const t = a + b;
    if (!first.has(t)) first.set(t, rank);
    else if (last.get(t) !== rank - 1) throw bad(`the merges making ${JSON.stringify(t)} are not ranked together, as SentencePiece's are`);
    last.set(t, rank);
  });
  const scores = new Float32Array(tokens.length);
  for (const [t, i] of ids) {
    const rank = first.get(t);
    if (rank !== undefined) { scores[i] = -rank; continue; }
    const chars = [...t];
    for (let k = 1; k < chars.length; k++) {
      if (ids.has(chars.slice(0, k).join('')) && ids.has(chars.slice(k).join(''))) throw bad(`token ${JSON.stringify(t)} is two tokens joined but no merge makes it (llama.cpp would merge them)`);
    }
  }
  // Ranks past 2^24 would round together in f32 and tie.
  if (merges.length > 1 << 24) throw bad(`${merges.length} merges are more than f32 scores keep apart`);
  return scores;
}

function tokenizerKvs(t: GgufTokenizerInput, vocabSize: number): Kv[] {
  const bad = (msg: string) => new MlaError('BAD_INPUT', `tokenizer.json: ${msg}`);
  const json = t.tokenizerJson, cfg = isObject(t.tokenizerConfig) ? t.tokenizerConfig : {};
  if (!isObject(json) || !isObject(json.model)) throw bad('not a tokenizers JSON object');
  const model = json.model;
  if (model.type !== 'BPE' || !isObject(model.vocab)) {
    throw bad('only BPE tokenizers are written to GGUF (byte-level: llama.cpp\'s "gpt2" model; SentencePiece\'s, with byte fallback: "llama")');
  }
  // BPE with byte fallback is SentencePiece's as tokenizer.json holds it (Llama 2, Mistral, Phi-3).
  const spm = model.byte_fallback === true;
  const merges = (Array.isArray(model.merges) ? model.merges : []).map((m) => (Array.isArray(m) ? m.join(' ') : String(m)));
  const pre = spm ? 'default' : preTokenizerName(json.pre_tokenizer, merges.length > 0);
  if (pre === null) throw bad('its pre-tokenizer is none of those llama.cpp knows by name (' + Object.keys(PRE_TOKENIZERS).join(', ') + ')');
  const spacePrefix = spm ? spmSpacePrefix(json) : false;
  const tokens: (string | undefined)[] = new Array(vocabSize);
  const types = new Int32Array(vocabSize).fill(1);
  for (const [tok, id] of Object.entries(model.vocab as Record<string, number>)) if (id < vocabSize) tokens[id] = tok;
  const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
  for (const a of added) {
    if (!isObject(a) || typeof a.id !== 'number' || typeof a.content !== 'string' || a.id >= vocabSize) continue;
    tokens[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4;
  }
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) { tokens[i] = `[PAD${i}]`; types[i] = 5; }
  }
  if (spm) {
    for (let i = 0; i < vocabSize; i++) if (types[i] === 1 && /^<0x[0-9A-F]{2}>$/.test(tokens[i]!)) types[i] = 6;
    const unk = typeof model.unk_token === 'string' ? tokens.indexOf(model.unk_token) : -1;
    if (unk >= 0) types[unk] = 2;
  }
  const idOf = (v: unknown): number | undefined => {
    const text = typeof v === 'string' ? v : isObject(v) && typeof v.content === 'string' ? v.content : undefined;
    if (text === undefined) return undefined;
    const i = tokens.indexOf(text);
    return i < 0 ? undefined : i;
  };
  const kvs: Kv[] = [
    ['tokenizer.ggml.model', 'str', spm ? 'llama' : 'gpt2'],
    ['tokenizer.ggml.pre', 'str', pre],
    ['tokenizer.ggml.tokens', 'strs', tokens],
    ['tokenizer.ggml.token_type', 'i32s', types],
    ...(spm ? [['tokenizer.ggml.scores', 'f32s', spmScores(tokens as string[], types, merges, bad)], ['tokenizer.ggml.add_space_prefix', 'bool', spacePrefix]] as Kv[]
      : [['tokenizer.ggml.merges', 'strs', merges]] as Kv[]),
  ];
  const special: [string, unknown][] = [['bos', cfg.bos_token], ['eos', cfg.eos_token], ['unknown', cfg.unk_token], ['padding', cfg.pad_token]];
  for (const [what, v] of special) {
    const id = idOf(v);
    if (id !== undefined) kvs.push([`tokenizer.ggml.${what}_token_id`, 'u32', id]);
  }
  // tokenizer.json's post-processor adding BOS is what add_bos_token says to llama.cpp.
  const post = JSON.stringify(json.post_processor ?? null);
  const bosText = typeof cfg.bos_token === 'string' ? cfg.bos_token : isObject(cfg.bos_token) ? cfg.bos_token.content : undefined;
  const addBos = cfg.add_bos_token === true || (typeof bosText === 'string' && post.includes(JSON.stringify(bosText)));
  kvs.push(['tokenizer.ggml.add_bos_token', 'bool', addBos], ['tokenizer.ggml.add_eos_token', 'bool', cfg.add_eos_token === true]);
  const template = t.chatTemplate ?? (typeof cfg.chat_template === 'string' ? cfg.chat_template : null);
  if (template) kvs.push(['tokenizer.chat_template', 'str', template]);
  return kvs;
}

// ---------------------------------------------------------------------------------------------
// Model: metadata and tensors

function modelKvs(c: ModelConfig, arch: string, split: boolean, type: StoredType, name: string): Kv[] {
  const k = (key: string) => `${arch}.${key}`;
  const a = c.attention;
  const kvs: Kv[] = [
    ['general.architecture', 'str', arch],
    ['general.name', 'str', name],
    ['general.file_type', 'u32', FILE_TYPE[type]],
    ['general.quantization_version', 'u32', 2],
    [k('vocab_size'), 'u32', c.vocabSize],
    // phi3 keeps the window and the checkpoint's context, as llama.cpp's converter writes them.
    [k('context_length'), 'u32', arch === 'phi3' ? c.slidingWindow?.maxPositions ?? c.maxPositions : c.maxPositions],
    [k('embedding_length'), 'u32', c.hidden],
    [k('block_count'), 'u32', c.layers],
    [k('attention.head_count'), 'u32', a.heads],
    [k('attention.layer_norm_rms_epsilon'), 'f32', c.rmsEps],
    [k('rope.freq_base'), 'f32', c.ropeTheta],
  ];
  if (c.yarn) {
    if (c.yarn.mscale !== c.yarn.mscaleAllDim) throw new MlaError('BAD_INPUT', 'GGUF keeps one YaRN mscale (0.1·mscale_all_dim): this model\'s mscale and mscale_all_dim differ');
    kvs.push([k('rope.scaling.type'), 'str', 'yarn'], [k('rope.scaling.factor'), 'f32', c.yarn.factor],
      [k('rope.scaling.original_context_length'), 'u32', c.yarn.originalMaxPositions],
      [k('rope.scaling.yarn_log_multiplier'), 'f32', 0.1 * c.yarn.mscaleAllDim],
      [k('rope.scaling.yarn_beta_fast'), 'f32', c.yarn.betaFast], [k('rope.scaling.yarn_beta_slow'), 'f32', c.yarn.betaSlow]);
  }
  const dense = c.ffn.find((f) => f.kind === 'dense');
  const moe = c.ffn.find((f) => f.kind === 'moe');
  if (a.kind === 'gqa') {
    if (moe) throw new MlaError('BAD_INPUT', 'a Llama model with MoE layers is not written');
    kvs.push([k('attention.head_count_kv'), 'u32', a.kvHeads], [k('feed_forward_length'), 'u32', dense!.intermediate],
      [k('rope.dimension_count'), 'u32', rotaryDim(a)], [k('attention.key_length'), 'u32', a.headDim], [k('attention.value_length'), 'u32', a.vDim]);
    if (arch === 'phi3') {
      // llama.cpp's converter writes the window (0: none); its phi3 loader then runs without one.
      kvs.push([k('attention.sliding_window'), 'u32', c.slidingWindow?.window ?? 0]);
      // llama.cpp takes rope_factors_long when its context passes original_context_length, and
      // multiplies cos and sin by attn_factor with either set, as parseConfig does.
      if (c.longRope) kvs.push([k('rope.scaling.original_context_length'), 'u32', c.longRope.originalMaxPositions], [k('rope.scaling.attn_factor'), 'f32', c.longRope.attentionFactor]);
      return kvs;
    }
    // One factor for every frequency is llama.cpp's "linear" scaling; others go in rope_freqs.
    const f = c.ropeFreqFactors;
    if (f && f.every((x) => x === f[0])) kvs.push([k('rope.scaling.type'), 'str', 'linear'], [k('rope.scaling.factor'), 'f32', f[0]]);
    return kvs;
  }
  if (arch === 'minicpm3') {
    kvs.push([k('attention.head_count_kv'), 'u32', a.heads], [k('feed_forward_length'), 'u32', dense!.intermediate],
      [k('attention.q_lora_rank'), 'u32', a.qLoraRank!], [k('attention.kv_lora_rank'), 'u32', a.kvLoraRank],
      [k('attention.key_length'), 'u32', a.nopeDim + a.ropeDim], [k('attention.value_length'), 'u32', a.vDim],
      [k('rope.dimension_count'), 'u32', a.ropeDim]);
    return kvs;
  }
  const leading = c.ffn.findIndex((f) => f.kind === 'moe');
  const firstDense = leading < 0 ? c.layers : leading;
  if (c.ffn.some((f, l) => (l < firstDense) !== (f.kind === 'dense'))) {
    throw new MlaError('BAD_INPUT', 'deepseek2 in GGUF has dense layers first and MoE layers after: this model interleaves them');
  }
  kvs.push(
    [k('attention.head_count_kv'), 'u32', split ? 1 : a.heads],
    [k('feed_forward_length'), 'u32', dense?.intermediate ?? (moe as { intermediate: number }).intermediate],
    [k('leading_dense_block_count'), 'u32', firstDense],
    [k('attention.kv_lora_rank'), 'u32', a.kvLoraRank],
    [k('attention.key_length'), 'u32', split ? a.kvLoraRank + a.ropeDim : a.nopeDim + a.ropeDim],
    [k('attention.value_length'), 'u32', split ? a.kvLoraRank : a.vDim],
    [k('rope.dimension_count'), 'u32', a.ropeDim],
  );
  if (split) kvs.push([k('attention.key_length_mla'), 'u32', a.nopeDim + a.ropeDim], [k('attention.value_length_mla'), 'u32', a.vDim]);
  if (a.qLoraRank) kvs.push([k('attention.q_lora_rank'), 'u32', a.qLoraRank]);
  if (moe && moe.kind === 'moe') {
    kvs.push([k('expert_count'), 'u32', moe.experts], [k('expert_used_count'), 'u32', moe.topK],
      [k('expert_feed_forward_length'), 'u32', moe.intermediate],
      [k('expert_shared_count'), 'u32', moe.sharedIntermediate / moe.intermediate],
      [k('expert_weights_scale'), 'f32', moe.scale], [k('expert_weights_norm'), 'bool', moe.normTopk],
      [k('expert_gating_func'), 'u32', moe.scoring === 'sigmoid' ? 2 : 1]);
    if (moe.groups > 1) kvs.push([k('expert_group_count'), 'u32', moe.groups], [k('expert_group_used_count'), 'u32', moe.topkGroup]);
    if (!Number.isInteger(moe.sharedIntermediate / moe.intermediate)) throw new MlaError('BAD_INPUT', 'shared experts are not a whole number of experts');
  } else {
    // llama.cpp's deepseek2 loader reads these even for dense models.
    kvs.push([k('expert_feed_forward_length'), 'u32', dense!.intermediate], [k('expert_shared_count'), 'u32', 0]);
  }
  return kvs;
}

/** Rows of a [rows, cols] matrix, permuted per head as llama.cpp's converter does for q and k. */
function ropePermute(x: Float32Array, heads: number, cols: number): Float32Array {
  const rows = x.length / cols, d = rows / heads, out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < d / 2; i++) {
      for (let j = 0; j < 2; j++) {
        out.set(x.subarray((h * d + j * (d / 2) + i) * cols, (h * d + j * (d / 2) + i + 1) * cols), (h * d + 2 * i + j) * cols);
      }
    }
  }
  return out;
}

/**
 * llama.cpp's minicpm3 graph fixes MiniCPM3-4B's scalings (scale_emb 12, scale_depth 1.4,
 * dim_model_base 256) and needs the query LoRA: another model would load there and compute wrong.
 */
function checkMiniCpm3(c: ModelConfig): void {
  const a = c.attention;
  const want = { embedScale: 12, residualScale: 1.4 / Math.sqrt(c.layers), headScale: 256 / c.hidden };
  const off = Object.entries(want).filter(([key, v]) => c[key as keyof typeof want] !== v).map(([key]) => key);
  if (off.length) {
    throw new MlaError('BAD_INPUT', `llama.cpp's minicpm3 fixes scale_emb 12, scale_depth 1.4 and dim_model_base 256: this model differs (${off.join(', ')})`);
  }
  if (a.kind !== 'mla' || !a.qLoraRank) throw new MlaError('BAD_INPUT', 'llama.cpp\'s minicpm3 needs q_lora_rank: this model has none');
  if (c.ffn.some((f) => f.kind !== 'dense')) throw new MlaError('BAD_INPUT', 'a MiniCPM3 model with MoE layers is not written');
}

/** Lays out every tensor and the header; values are computed later, tensor by tensor. */
export function planGguf(c: ModelConfig, src: TensorSource, tokenizer: GgufTokenizerInput | null, options: GgufWriteOptions = {}): GgufPlan {
  const type = options.type ?? 'F32';
  if (!(type in TYPE_ID)) throw new MlaError('BAD_INPUT', `GGUF type ${String(type)} is not written (F32, F16, BF16, Q8_0, Q4_0)`);
  const keep = new Set(options.keep ?? []);
  const a = c.attention;
  // Mistral is written as llama, as llama.cpp's converter does (its llama graph has no sliding
  // window; a window below the context already limited it, parseConfig).
  const arch = c.architecture === 'MiniCPM3ForCausalLM' ? 'minicpm3' : c.architecture === 'Phi3ForCausalLM' ? 'phi3'
    : a.kind === 'mla' ? 'deepseek2' : a.qkvBias ? 'qwen2' : 'llama';
  if (arch === 'qwen2' && c.ropeFreqFactors) throw new MlaError('BAD_INPUT', 'llama.cpp\'s qwen2 takes no per-frequency rope factors: this model has them');
  if (arch === 'minicpm3') checkMiniCpm3(c);
  const split = arch === 'deepseek2' && (options.mlaLayout ?? 'split') === 'split';
  const shapeOf = (name: string) => {
    const s = src.shape(name);
    if (!s) throw new MlaError('MISSING_TENSOR', `no tensor "${name}" to write`);
    return s;
  };
  const read = (name: string) => {
    const out = new Float32Array(shapeOf(name).reduce((x, y) => x * y, 1));
    src.read(name, out);
    return out;
  };
  const tensors: Planned[] = [];
  // In quantised files, what loadModel's int8/int4 keep wider stays so here too (model/weights.ts
  // formatChooser): kv_b_proj F32 (attn_k_b may not be quantised for llama.cpp either), rows not a
  // multiple of 32 F16, and with Q4_0 the output matrix Q8_0.
  const add = (name: string, ne: number[], from: string[], values: () => Float32Array, opts: { f32?: boolean; kb?: boolean } = {}) => {
    let t: StoredType = type;
    const quant = t === 'Q8_0' || t === 'Q4_0';
    if (ne.length === 1 || opts.f32 || from.some((n) => keep.has(n)) || (quant && opts.kb)) t = 'F32';
    else if (quant && ne[0] % 32 !== 0) t = 'F16';
    else if (t === 'Q4_0' && name === 'output.weight') t = 'Q8_0';
    const n = ne.reduce((x, y) => x * y, 1);
    tensors.push({ name, from, ne, type: t, values, offset: 0, bytes: bytesOf(t, n) });
  };
  const plain = (gguf: string, hf: string, opts: { f32?: boolean } = {}) => add(gguf, [...shapeOf(hf)].reverse(), [hf], () => read(hf), opts);

  plain('token_embd.weight', 'model.embed_tokens.weight');
  const f = c.ropeFreqFactors;
  if (arch === 'llama' && f && !f.every((x) => x === f[0])) add('rope_freqs.weight', [f.length], [], () => Float32Array.from(f));
  // MiniCPM3's LongRoPE within its context: only the short factors are used (and kept).
  if (arch === 'minicpm3' && f) add('rope_factors_short.weight', [f.length], [], () => Float32Array.from(f));
  const lr = c.longRope;
  if (arch === 'phi3' && lr) {
    add('rope_factors_long.weight', [lr.long.length], [], () => Float32Array.from(lr.long));
    add('rope_factors_short.weight', [lr.short.length], [], () => Float32Array.from(lr.short));
  }
  /** One GGUF matrix holding Hugging Face matrices stacked by rows, as llama.cpp's phi3 fuses them. */
  const stacked = (gguf: string, names: string[]) => {
    const shapes = names.map(shapeOf);
    add(gguf, [shapes[0][1], shapes.reduce((n, s) => n + s[0], 0)], names, () => {
      const out = new Float32Array(shapes.reduce((n, s) => n + s[0] * s[1], 0));
      let at = 0;
      for (const n of names) { const x = read(n); out.set(x, at); at += x.length; }
      return out;
    });
  };
  plain('output_norm.weight', 'model.norm.weight');
  if (!c.tieEmbeddings) plain('output.weight', 'lm_head.weight');
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}.`, b = `blk.${l}.`;
    plain(b + 'attn_norm.weight', p + 'input_layernorm.weight');
    plain(b + 'ffn_norm.weight', p + 'post_attention_layernorm.weight');
    plain(b + 'attn_output.weight', p + 'self_attn.o_proj.weight');
    if (a.kind === 'mla') {
      if (a.qLoraRank) {
        plain(b + 'attn_q_a.weight', p + 'self_attn.q_a_proj.weight');
        plain(b + 'attn_q_a_norm.weight', p + 'self_attn.q_a_layernorm.weight');
        plain(b + 'attn_q_b.weight', p + 'self_attn.q_b_proj.weight');
      } else {
        plain(b + 'attn_q.weight', p + 'self_attn.q_proj.weight');
      }
      plain(b + 'attn_kv_a_mqa.weight', p + 'self_attn.kv_a_proj_with_mqa.weight');
      plain(b + 'attn_kv_a_norm.weight', p + 'self_attn.kv_a_layernorm.weight');
      const kvb = p + 'self_attn.kv_b_proj.weight';
      if (!split) {
        add(b + 'attn_kv_b.weight', [...shapeOf(kvb)].reverse(), [kvb], () => read(kvb), { kb: true });
      } else {
        const { heads: H, nopeDim: dn, vDim: dv, kvLoraRank: dc } = a;
        add(b + 'attn_k_b.weight', [dn, dc, H], [kvb], () => {
          const w = read(kvb), out = new Float32Array(H * dn * dc);
          for (let h = 0; h < H; h++) {
            for (let i = 0; i < dn; i++) for (let j = 0; j < dc; j++) out[h * dc * dn + j * dn + i] = w[(h * (dn + dv) + i) * dc + j];
          }
          return out;
        }, { kb: true });
        add(b + 'attn_v_b.weight', [dc, dv, H], [kvb], () => {
          const w = read(kvb), out = new Float32Array(H * dv * dc);
          for (let h = 0; h < H; h++) out.set(w.subarray((h * (dn + dv) + dn) * dc, (h + 1) * (dn + dv) * dc), h * dv * dc);
          return out;
        }, { kb: true });
      }
    } else if (arch === 'phi3') {
      // Hugging Face's phi3 fuses them too: [q; k; v] rows, halves rotated as llama.cpp's phi3 does.
      stacked(b + 'attn_qkv.weight', ['q', 'k', 'v'].map((x) => `${p}self_attn.${x}_proj.weight`));
    } else if (arch === 'qwen2') {
      // llama.cpp rotates qwen2's halves as Hugging Face does: no permutation.
      for (const x of ['q', 'k', 'v']) {
        plain(`${b}attn_${x}.weight`, `${p}self_attn.${x}_proj.weight`);
        plain(`${b}attn_${x}.bias`, `${p}self_attn.${x}_proj.bias`);
      }
    } else {
      const q = p + 'self_attn.q_proj.weight', k = p + 'self_attn.k_proj.weight';
      add(b + 'attn_q.weight', [...shapeOf(q)].reverse(), [q], () => ropePermute(read(q), a.heads, c.hidden));
      add(b + 'attn_k.weight', [...shapeOf(k)].reverse(), [k], () => ropePermute(read(k), a.kvHeads, c.hidden));
      plain(b + 'attn_v.weight', p + 'self_attn.v_proj.weight');
    }
    const f = c.ffn[l];
    if (f.kind === 'dense' && arch === 'phi3') {
      // llama.cpp's phi3 ffn_up holds [gate; up] rows (its fused SwiGLU takes the gate half first).
      stacked(b + 'ffn_up.weight', [`${p}mlp.gate_proj.weight`, `${p}mlp.up_proj.weight`]);
      plain(b + 'ffn_down.weight', p + 'mlp.down_proj.weight');
      continue;
    }
    if (f.kind === 'dense') {
      for (const w of ['gate', 'up', 'down']) plain(`${b}ffn_${w}.weight`, `${p}mlp.${w}_proj.weight`);
      continue;
    }
    plain(b + 'ffn_gate_inp.weight', p + 'mlp.gate.weight', { f32: true });
    if (f.method === 'noaux_tc') plain(b + 'exp_probs_b.bias', p + 'mlp.gate.e_score_correction_bias', { f32: true });
    for (const w of ['gate', 'up', 'down']) {
      const names = Array.from({ length: f.experts }, (_, e) => `${p}mlp.experts.${e}.${w}_proj.weight`);
      const [rows, cols] = shapeOf(names[0]);
      add(`${b}ffn_${w}_exps.weight`, [cols, rows, f.experts], names, () => {
        const out = new Float32Array(f.experts * rows * cols);
        names.forEach((n, e) => out.set(read(n), e * rows * cols));
        return out;
      });
    }
    if (f.sharedIntermediate) for (const w of ['gate', 'up', 'down']) plain(`${b}ffn_${w}_shexp.weight`, `${p}mlp.shared_experts.${w}_proj.weight`);
  }

  const kvs = modelKvs(c, arch, split, type, options.name ?? 'mla-wasm model');
  if (tokenizer) kvs.push(...tokenizerKvs(tokenizer, c.vocabSize));
  if (tokenizer?.generationConfig !== undefined) kvs.push(...samplingKvs(tokenizer.generationConfig));
  // Special ids from the config where no tokenizer names them (they are tokenizer keys in GGUF).
  const has = (key: string) => kvs.some(([k]) => k === key);
  if (c.bosTokenId !== null && !has('tokenizer.ggml.bos_token_id')) kvs.push(['tokenizer.ggml.bos_token_id', 'u32', c.bosTokenId]);
  if (c.eosTokenIds.length && !has('tokenizer.ggml.eos_token_id')) kvs.push(['tokenizer.ggml.eos_token_id', 'u32', c.eosTokenIds[0]]);
  const h = new Bytes();
  h.u32(0x46554747);
  h.u32(3);
  h.u64(tensors.length);
  h.u64(kvs.length);
  for (const kv of kvs) writeKv(h, kv);
  let offset = 0;
  for (const t of tensors) {
    t.offset = offset;
    offset = alignUp(offset + t.bytes);
    h.str(t.name);
    h.u32(t.ne.length);
    for (const n of t.ne) h.u64(n);
    h.u32(TYPE_ID[t.type]);
    h.u64(t.offset);
  }
  h.pad();
  const header = h.bytes();
  return { header, tensors, size: header.length + offset };
}

/** The file's bytes in order: the header, then each tensor's data padded to the alignment. */
export function* ggufChunks(plan: GgufPlan): Generator<Uint8Array> {
  yield plan.header;
  for (const t of plan.tensors) {
    const out = new Uint8Array(alignUp(t.bytes));
    const x = t.values();
    encodeValues(t.type, x, out);
    checkHalfRange(t, x, out);
    yield out;
  }
}

/**
 * A value past ±65504 becomes an f16 infinity: as an F16 weight, or as the f16 scale of a Q8_0 /
 * Q4_0 block (its largest |x| past 65504·127 or ·8). Neither loads (weights.ts), so it is not written.
 */
function checkHalfRange({ name, from, type }: Planned, x: Float32Array, out: Uint8Array): void {
  if (type !== 'F16' && type !== 'Q8_0' && type !== 'Q4_0') return;
  const view = new DataView(out.buffer, out.byteOffset, out.length);
  const step = type === 'F16' ? 2 : type === 'Q8_0' ? 34 : 18, per = type === 'F16' ? 1 : 32;
  for (let i = 0; i * per < x.length; i++) {
    if ((view.getUint16(i * step, true) & 0x7c00) !== 0x7c00) continue;
    let at = i * per;
    for (let j = at; j < at + per; j++) if (Math.abs(x[j]) > Math.abs(x[at])) at = j;
    throw new MlaError('NON_FINITE', `${name} holds ${x[at]} at element ${at}, beyond what ${type} can hold (its f16 `
      + `${type === 'F16' ? 'values' : 'block scales'}): write the model as bf16 or f32, or keep ${from.join(', ')} F32 (keep / --keep)`);
  }
}

/** A whole GGUF file in memory. */
export function writeGguf(c: ModelConfig, src: TensorSource, tokenizer: GgufTokenizerInput | null, options: GgufWriteOptions = {}): Uint8Array {
  const plan = planGguf(c, src, tokenizer, options);
  const out = new Uint8Array(plan.size);
  let at = 0;
  for (const chunk of ggufChunks(plan)) { out.set(chunk, at); at += chunk.length; }
  return out;
}
