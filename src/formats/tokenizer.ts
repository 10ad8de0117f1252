// Text ↔ token ids for a Hugging Face folder: tokenizer.json through @huggingface/tokenizers, the
// chat template of tokenizer_config.json through @huggingface/jinja, and a streaming detokenizer
// that only lets out whole UTF-8 characters. No model-specific code: the default model's byte-level
// tokenizer takes the same path as DeepSeek-V3's.
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { checkOptions, MlaError, showValue } from '../errors.js';

/** One message of a conversation, as chat templates expect it. */
export interface ChatMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface EncodeOptions {
  /** Add the special tokens the tokenizer adds to a text (BOS for most decoders); default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (BOS, EOS, pad, …); default false. */
  skipSpecialTokens?: boolean;
}

export interface ChatTemplateOptions {
  /** End with the assistant's turn opener so that the model answers; default true. */
  addGenerationPrompt?: boolean;
}

// Every option's name, checked against the interfaces: a new option cannot be forgotten here.
const ENCODE_OPTIONS = Object.keys({ addSpecialTokens: 1 } satisfies Record<keyof EncodeOptions, 1>);
const DECODE_OPTIONS = Object.keys({ skipSpecialTokens: 1 } satisfies Record<keyof DecodeOptions, 1>);
const TEMPLATE_OPTIONS = Object.keys({ addGenerationPrompt: 1 } satisfies Record<keyof ChatTemplateOptions, 1>);

/** The raw JSON of a folder's optional files (what loadTokenizerFiles takes). */
export interface TokenizerFiles {
  tokenizerJson?: unknown;
  tokenizerConfig?: unknown;
  generationConfig?: unknown;
  /** The text of chat_template.jinja, where a folder keeps its template apart. */
  chatTemplate?: string;
}

/** generation_config.json, the keys generation reads (Hugging Face names → ours). */
export interface GenerationConfig {
  /** false: greedy (temperature 0) unless the caller asks to sample. */
  doSample: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
  /** max_length: prompt and new tokens together. */
  maxLength?: number;
  bosTokenId?: number;
  eosTokenIds: number[];
  padTokenId?: number;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A special token in tokenizer_config.json is a string or an AddedToken object { content }. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

/** chat_template is a string or a list of { name, template } (the one named "default" is used). */
function chatTemplateOf(config: Record<string, unknown>, separate?: string): string | null {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t.filter((x): x is { name: string; template: string } => isObject(x) && typeof x.template === 'string');
    return (named.find((x) => x.name === 'default') ?? named[0])?.template ?? null;
  }
  return separate ?? null;
}

/** GPT-2's byte alphabet backwards: the printable character byte-level BPE writes for each byte → the byte. */
const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    m.set(String.fromCharCode(printable ? b : 256 + extra++), b);
  }
  return m;
})();

/** Whether a decoder (or one in a Sequence) has the given type. */
function hasDecoder(d: unknown, type: string): boolean {
  if (!isObject(d)) return false;
  return d.type === type || (Array.isArray(d.decoders) && d.decoders.some((x) => hasDecoder(x, type)));
}

const utf8 = new TextEncoder();

export class Tokenizer {
  /** Ids the vocabulary spans (the largest id + 1, added tokens included). */
  readonly vocabSize: number;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** The Jinja chat template, or null when the tokenizer has none. */
  readonly chatTemplate: string | null;
  private readonly hf: HfTokenizer;
  private readonly specialIds: Set<number>;
  private readonly addBos: boolean;
  private readonly addEos: boolean;
  private template: Template | null = null;
  /** How tokenBytes reads a token: through GPT-2's byte alphabet, or SentencePiece's <0xNN> and ▁. */
  private readonly byteLevel: boolean;
  private readonly byteFallback: boolean;

  /**
   * @param tokenizerJson the parsed tokenizer.json
   * @param tokenizerConfig the parsed tokenizer_config.json ({} when the folder has none)
   * @param chatTemplate a separate chat_template.jinja, used when tokenizer_config has no template
   */
  constructor(tokenizerJson: unknown, tokenizerConfig: unknown = {}, chatTemplate?: string) {
    if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
      throw new MlaError('BAD_CONFIG', 'tokenizer.json: not a tokenizers JSON object (no "model")');
    }
    if (!isObject(tokenizerConfig)) throw new MlaError('BAD_CONFIG', 'tokenizer_config.json: not a JSON object');
    const json = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...tokenizerJson };
    try {
      this.hf = new HfTokenizer(json, tokenizerConfig);
    } catch (e) {
      throw new MlaError('BAD_CONFIG', `tokenizer.json: ${(e as Error).message}`);
    }
    const added = [...this.hf.get_added_tokens_decoder().values()];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
    this.vocabSize = Math.max(this.hf.get_vocab(true).size, ...added.map((t) => t.id + 1));
    const c = tokenizerConfig;
    this.bosToken = tokenText(c.bos_token);
    this.eosToken = tokenText(c.eos_token);
    this.bosTokenId = this.bosToken === null ? null : this.hf.token_to_id(this.bosToken) ?? null;
    this.eosTokenId = this.eosToken === null ? null : this.hf.token_to_id(this.eosToken) ?? null;
    this.chatTemplate = chatTemplateOf(c, chatTemplate);
    // add_bos_token / add_eos_token: what transformers' Llama-family fast tokenizers turn into a
    // post-processor. Where tokenizer.json's post-processor already adds them, nothing more is added.
    this.addBos = c.add_bos_token === true && this.bosTokenId !== null;
    this.addEos = c.add_eos_token === true && this.eosTokenId !== null;
    this.byteLevel = hasDecoder(json.decoder, 'ByteLevel');
    this.byteFallback = hasDecoder(json.decoder, 'ByteFallback');
  }

  /**
   * The bytes token `id` stands for (OpenAI's logprobs `bytes`): part of a character when the
   * character takes several tokens, which decode() cannot show. Special tokens give their text.
   */
  tokenBytes(id: number): Uint8Array {
    const token = this.hf.id_to_token(id);
    if (token === undefined) throw new MlaError('BAD_TOKEN', `token id ${showValue(id)} is not in the vocabulary`);
    if (this.specialIds.has(id)) return utf8.encode(token);
    if (this.byteLevel) {
      const chars = [...token];
      if (chars.every((ch) => BYTE_OF_CHAR.has(ch))) return Uint8Array.from(chars, (ch) => BYTE_OF_CHAR.get(ch)!);
      return utf8.encode(token); // an added token written as plain text
    }
    const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
    if (this.byteFallback && byte) return Uint8Array.of(parseInt(byte[1], 16));
    return utf8.encode(token.replace(/▁/g, ' '));
  }

  /** Whether `id` is a special token (BOS, EOS, pad, reserved, role markers …). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** The token string of an id (byte-level tokens in their printable form), or undefined. */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    checkOptions(options, ENCODE_OPTIONS, 'encode() options');
    if (typeof text !== 'string') throw new MlaError('BAD_INPUT', 'text to encode must be a string');
    const special = options.addSpecialTokens ?? true;
    const ids = this.hf.encode(text, { add_special_tokens: special }).ids;
    if (special) {
      if (this.addBos && ids[0] !== this.bosTokenId) ids.unshift(this.bosTokenId!);
      if (this.addEos && ids[ids.length - 1] !== this.eosTokenId) ids.push(this.eosTokenId!);
    }
    return ids;
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    checkOptions(options, DECODE_OPTIONS, 'decode() options');
    const list = Array.from(ids);
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new MlaError('BAD_TOKEN', `token id ${showValue(id)} is not an integer in [0, ${this.vocabSize})`);
      }
    }
    const kept = options.skipSpecialTokens ? list.filter((id) => !this.specialIds.has(id)) : list;
    if (kept.length === 0) return '';
    return this.hf.decode(kept, { skip_special_tokens: false });
  }

  /** A decoder for a stream of ids that lets text out only in whole UTF-8 characters. */
  createStreamDecoder(options: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, options);
  }

  /** Render a conversation through the chat template (BOS and EOS strings from tokenizer_config). */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string {
    checkOptions(options, TEMPLATE_OPTIONS, 'applyChatTemplate() options');
    if (this.chatTemplate === null) throw new MlaError('BAD_INPUT', 'this tokenizer has no chat template');
    checkMessages(messages);
    if (!this.template) {
      try {
        this.template = new Template(this.chatTemplate);
      } catch (e) {
        throw new MlaError('BAD_CONFIG', `tokenizer_config.json: the chat template does not parse: ${(e as Error).message}`);
      }
    }
    try {
      return this.template.render({
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.bosToken ?? '',
        eos_token: this.eosToken ?? '',
      });
    } catch (e) {
      throw new MlaError('BAD_INPUT', `the chat template failed on these messages: ${(e as Error).message}`);
    }
  }

  /**
   * Token ids of a conversation: the rendered template encoded without adding special tokens again
   * (the template writes its own BOS), as transformers' apply_chat_template(tokenize=True) does.
   */
  encodeChat(messages: ChatMessage[], options: ChatTemplateOptions = {}): number[] {
    return this.encode(this.applyChatTemplate(messages, options), { addSpecialTokens: false });
  }
}

export function checkMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw new MlaError('BAD_INPUT', 'messages must be a non-empty array of { role, content }');
  messages.forEach((m, i) => {
    if (!isObject(m) || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new MlaError('BAD_INPUT', `messages[${i}] must be { role: string, content: string }`);
    }
  });
}

/**
 * Incremental detokenizer. Decoding one token at a time breaks characters whose UTF-8 bytes are
 * spread over several tokens (every non-ASCII character for a byte-level vocabulary), and it drops
 * the spaces some decoders only put between tokens. So each step decodes a short window of recent
 * tokens and lets out only the text past what was already let out, and only when the window does
 * not end in an incomplete character (U+FFFD, what a partial UTF-8 sequence decodes to).
 */
export class StreamDecoder {
  private readonly tok: Tokenizer;
  private readonly skipSpecial: boolean;
  private ids: number[] = [];
  /** ids[prefix..read) were decoded and let out already; ids[read..] are pending. */
  private prefix = 0;
  private read = 0;

  constructor(tokenizer: Tokenizer, options: DecodeOptions = {}) {
    checkOptions(options, DECODE_OPTIONS, 'stream decoder options');
    this.tok = tokenizer;
    this.skipSpecial = options.skipSpecialTokens ?? false;
  }

  /** Add one token; returns the text that became complete (often '' for a partial character). */
  push(id: number): string {
    this.ids.push(id);
    const before = this.decode(this.prefix, this.read);
    const now = this.decode(this.prefix, this.ids.length);
    // A character still incomplete: wait, unless more tokens are pending than any UTF-8 sequence
    // has bytes (then the U+FFFD is real: bytes that are not UTF-8).
    const incomplete = now.endsWith('\uFFFD') && this.ids.length - this.read < 4;
    if (incomplete || now.length <= before.length) return '';
    return this.release(now, before);
  }

  /** Whatever is still pending (an incomplete character comes out as U+FFFD). */
  flush(): string {
    if (this.read === this.ids.length) return '';
    return this.release(this.decode(this.prefix, this.ids.length), this.decode(this.prefix, this.read));
  }

  private decode(from: number, to: number): string {
    return this.tok.decode(this.ids.slice(from, to), { skipSpecialTokens: this.skipSpecial });
  }

  private release(now: string, before: string): string {
    const text = now.slice(before.length);
    this.prefix = this.read;
    this.read = this.ids.length;
    // Only ids[prefix..] is ever decoded again.
    if (this.prefix > 64) {
      this.ids = this.ids.slice(this.prefix);
      this.read -= this.prefix;
      this.prefix = 0;
    }
    return text;
  }
}

/** The optional files of a folder → a Tokenizer (or null) and the generation defaults (or null). */
export function loadTokenizerFiles(files: TokenizerFiles): { tokenizer: Tokenizer | null; generationConfig: GenerationConfig | null } {
  const tokenizer = files.tokenizerJson === undefined ? null
    : new Tokenizer(files.tokenizerJson, files.tokenizerConfig ?? {}, files.chatTemplate);
  const generationConfig = files.generationConfig === undefined ? null : parseGenerationConfig(files.generationConfig);
  return { tokenizer, generationConfig };
}

/** Read generation_config.json; a value of the wrong type is a BAD_CONFIG naming the key. */
export function parseGenerationConfig(json: unknown): GenerationConfig {
  if (!isObject(json)) throw new MlaError('BAD_CONFIG', 'generation_config.json: not a JSON object');
  const bad = (key: string): never => {
    throw new MlaError('BAD_CONFIG', `generation_config.json: "${key}" has a value we cannot use: ${JSON.stringify(json[key])}`);
  };
  const num = (key: string, ok: (v: number) => boolean): number | undefined => {
    const v = json[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) bad(key);
    return v as number;
  };
  const int = (key: string, min: number) => num(key, (v) => Number.isInteger(v) && v >= min);
  const eos = json.eos_token_id;
  const eosList = eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!eosList.every((x) => Number.isInteger(x) && x >= 0)) bad('eos_token_id');
  if (json.do_sample !== undefined && typeof json.do_sample !== 'boolean') bad('do_sample');
  return {
    doSample: json.do_sample === true,
    temperature: num('temperature', (v) => v >= 0),
    topK: int('top_k', 0),
    topP: num('top_p', (v) => v > 0 && v <= 1),
    repetitionPenalty: num('repetition_penalty', (v) => v > 0),
    maxNewTokens: int('max_new_tokens', 1),
    maxLength: int('max_length', 1),
    bosTokenId: int('bos_token_id', 0),
    eosTokenIds: eosList as number[],
    padTokenId: int('pad_token_id', 0),
  };
}
