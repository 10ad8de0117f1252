// A GGUF file's tokenizer.ggml.* metadata → the tokenizer.json and tokenizer_config.json objects a
// Hugging Face folder would have, so that src/formats/tokenizer.ts builds the same Tokenizer:
//   gpt2   byte-level BPE: tokens, merges ("a b"), and the pre-tokenizer named by tokenizer.ggml.pre,
//          as llama.cpp's llama-vocab.cpp splits text (a list of regexes, each splitting the pieces
//          of the one before, matches kept as pieces: a Sequence of Split … Isolated);
//   llama  SentencePiece BPE: tokens with scores, byte tokens <0xXX>; the merges are rebuilt from the
//          scores (a pair merges with the priority of the token it makes, as llama.cpp's SPM
//          tokenizer picks the highest-scoring bigram), '▁' for spaces, byte fallback.
// Token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. Control and
// unknown tokens become special added tokens, user-defined ones plain added tokens.
import { MlaError } from '../errors.js';
import type { GgufFile } from './gguf.js';
import { metadataReader } from './gguf-config.js';

/** llama.cpp's pre-tokenizer regexes by tokenizer.ggml.pre (those of the models this package runs). */
const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const LLAMA3 = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const CJK = '[一-龥ࠀ-一가-퟿]+';
export const PRE_TOKENIZERS: Record<string, string[]> = {
  'gpt-2': [GPT2],
  default: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'],
  // SmolLM's tokenizer.json: Digits (individual) then ByteLevel's own regex.
  smollm: ['\\p{N}', GPT2],
  'llama-bpe': [LLAMA3],
  llama3: [LLAMA3],
  qwen2: [LLAMA3.replace('\\p{N}{1,3}', '\\p{N}')],
  'deepseek-llm': [
    '[\r\n]',
    '\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+',
    '\\s?[!-/:-~！-／：-～‘-‟　-。]+',
    '\\s+$',
    CJK,
    '\\p{N}+',
  ],
  'deepseek-coder': ['[\r\n]', '\\s?\\p{L}+', '\\s?\\p{P}+', CJK, '\\p{N}'],
  'deepseek-v3': [
    '\\p{N}{1,3}',
    '[一-龥぀-ゟ゠-ヿ]+',
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
  ],
};

export interface TokenizerJsons { tokenizerJson: Record<string, unknown>; tokenizerConfig: Record<string, unknown> }

const NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4;

/** The tokenizer files equivalent to a GGUF file's tokenizer metadata, or null when it has none. */
export function ggufTokenizer(gguf: GgufFile, fileName: string): TokenizerJsons | null {
  const m = metadataReader(gguf, fileName);
  const model = m.str('tokenizer.ggml.model');
  if (model === undefined || model === 'none') return null;
  const bad = (msg: string) => new MlaError('BAD_CONFIG', `${fileName}: ${msg}`);
  const tokensRaw = m.list('tokenizer.ggml.tokens');
  if (!Array.isArray(tokensRaw) || !tokensRaw.every((t) => typeof t === 'string')) throw bad('tokenizer.ggml.tokens is not a list of strings');
  const tokens = tokensRaw as string[];
  const n = tokens.length;
  const typesRaw = m.list('tokenizer.ggml.token_type');
  if (typesRaw !== undefined && (Array.isArray(typesRaw) || typesRaw.length !== n)) throw bad(`tokenizer.ggml.token_type is not ${n} integers`);
  const type = (id: number) => (typesRaw ? (typesRaw as ArrayLike<number>)[id] : NORMAL);
  const id = (key: string) => {
    const v = m.int(key);
    if (v !== undefined && v >= n) throw bad(`${key} ${v} is not a token id (the vocabulary has ${n})`);
    return v;
  };
  const bos = id('tokenizer.ggml.bos_token_id'), eos = id('tokenizer.ggml.eos_token_id');
  const unk = id('tokenizer.ggml.unknown_token_id'), pad = id('tokenizer.ggml.padding_token_id');

  const vocab: Record<string, number> = Object.create(null);
  for (let i = 0; i < n; i++) if (!(tokens[i] in vocab)) vocab[tokens[i]] = i;
  const added = [];
  for (let i = 0; i < n; i++) {
    const t = type(i);
    if (t === CONTROL || t === UNKNOWN || t === USER_DEFINED) {
      added.push({ id: i, content: tokens[i], single_word: false, lstrip: false, rstrip: false, normalized: false, special: t !== USER_DEFINED });
    }
  }

  let json: Record<string, unknown>;
  if (model === 'gpt2') {
    const pre = m.str('tokenizer.ggml.pre') ?? 'default';
    const regexes = PRE_TOKENIZERS[pre];
    if (!regexes) throw bad(`tokenizer.ggml.pre "${pre}" is not known here (known: ${Object.keys(PRE_TOKENIZERS).join(', ')})`);
    const merges = m.list('tokenizer.ggml.merges') ?? [];
    if (!Array.isArray(merges) || !merges.every((x) => typeof x === 'string')) throw bad('tokenizer.ggml.merges is not a list of strings');
    json = {
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          ...regexes.map((r) => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false })),
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
        fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges },
    };
  } else if (model === 'llama') {
    const scoresRaw = m.list('tokenizer.ggml.scores');
    if (scoresRaw === undefined || Array.isArray(scoresRaw) || scoresRaw.length !== n) throw bad(`tokenizer.ggml.scores is not ${n} numbers`);
    const spacePrefix = m.bool('tokenizer.ggml.add_space_prefix') ?? true;
    json = {
      normalizer: spacePrefix
        ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] }
        : { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      pre_tokenizer: null,
      decoder: { type: 'Sequence', decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        ...(spacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ] },
      model: { type: 'BPE', dropout: null, unk_token: unk !== undefined ? tokens[unk] : null, continuing_subword_prefix: null,
        end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab,
        merges: spmMerges(tokens, scoresRaw as ArrayLike<number>, type) },
    };
  } else {
    throw bad(`tokenizer.ggml.model "${model}" is not supported (only gpt2 and llama)`);
  }
  json.added_tokens = added;
  json.post_processor = null;

  const template = m.str('tokenizer.chat_template');
  const config: Record<string, unknown> = {
    add_bos_token: m.bool('tokenizer.ggml.add_bos_token') ?? model === 'llama',
    add_eos_token: m.bool('tokenizer.ggml.add_eos_token') ?? false,
    // llama.cpp detokenizes without transformers' clean-up of spaces before punctuation.
    clean_up_tokenization_spaces: false,
  };
  if (bos !== undefined) config.bos_token = tokens[bos];
  if (eos !== undefined) config.eos_token = tokens[eos];
  if (unk !== undefined) config.unk_token = tokens[unk];
  if (pad !== undefined) config.pad_token = tokens[pad];
  if (template !== undefined) config.chat_template = template;
  return { tokenizerJson: json, tokenizerConfig: config };
}

/**
 * SentencePiece merges from scores: every split of a normal token into two tokens of the vocabulary
 * is a merge, ranked by the score of the token it makes (highest first; then by that token's id).
 */
function spmMerges(tokens: string[], scores: ArrayLike<number>, type: (id: number) => number): string[] {
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => { if (type(i) === NORMAL && !ids.has(t)) ids.set(t, i); });
  const merges: { pair: string; score: number; id: number; left: number }[] = [];
  for (const [t, i] of ids) {
    const chars = [...t];
    for (let k = 1; k < chars.length; k++) {
      const a = chars.slice(0, k).join(''), b = chars.slice(k).join('');
      const ia = ids.get(a), ib = ids.get(b);
      if (ia !== undefined && ib !== undefined) merges.push({ pair: `${a} ${b}`, score: scores[i], id: i, left: ia });
    }
  }
  merges.sort((x, y) => y.score - x.score || x.id - y.id || x.left - y.left);
  return merges.map((x) => x.pair);
}
