// The SentencePiece ("llama") tokenizer built from GGUF metadata against a plain implementation of
// llama.cpp's SPM tokenizer (llama-vocab.cpp's llm_tokenizer_spm: merge the adjacent pair whose
// merged text is the highest-scoring token, leftmost first on a tie; symbols that are no token fall
// back to byte tokens <0xXX>), on a synthetic vocabulary and random text.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../src/index.js';
import { memoryFile } from '../src/formats/source.js';
import { parseGguf } from '../src/formats/gguf.js';
import { ggufTokenizer } from '../src/formats/gguf-tokenizer.js';
import { rawGguf, type RawValue } from './reference/gguf-bytes.js';

const PIECES = ['▁', 'a', 'b', 'd', 'e', 'g', 'h', 'i', 'n', 't', 'é', '▁t', 'he', '▁the', 'an', '▁a', '▁an', 'nd', '▁and',
  'in', 'ing', '▁in', 'ng', 'th', 'the', 'at', '▁at', 'ea', 'tea', '▁tea', 'ee', 'é▁', 'ab', 'ba', 'aba', 'bab'];
const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`), ...PIECES];
const types = tokens.map((t, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1));
// Distinct scores, not in list order, so that the merge order is the scores' and not the ids'.
const scores = tokens.map((t, i) => (i < 259 ? 0 : -((i * 37) % 101) - t.length / 10));

/** llama.cpp's SPM tokenizer, written plainly. */
function spmReference(text: string): number[] {
  const ids = new Map(tokens.map((t, i) => [t, i]));
  const s = ('▁' + text.replaceAll(' ', '▁'));
  const sym = [...s];
  for (;;) {
    let best = -1, bestScore = -Infinity;
    for (let i = 0; i + 1 < sym.length; i++) {
      const id = ids.get(sym[i] + sym[i + 1]);
      if (id !== undefined && types[id] === 1 && scores[id] > bestScore) { best = i; bestScore = scores[id]; }
    }
    if (best < 0) break;
    sym.splice(best, 2, sym[best] + sym[best + 1]);
  }
  return sym.flatMap((p) => {
    const id = ids.get(p);
    return id !== undefined ? [id] : [...new TextEncoder().encode(p)].map((b) => 3 + b);
  });
}

const str = (v: string): RawValue => ({ t: 'str', v });
const bytes = rawGguf({
  kvs: [
    ['tokenizer.ggml.model', str('llama')],
    ['tokenizer.ggml.tokens', { t: 'arr', elem: 8, v: tokens.map(str) }],
    ['tokenizer.ggml.scores', { t: 'arr', elem: 6, v: scores.map((v) => ({ t: 'f32', v })) }],
    ['tokenizer.ggml.token_type', { t: 'arr', elem: 5, v: types.map((v) => ({ t: 'i32', v })) }],
    ['tokenizer.ggml.bos_token_id', { t: 'u32', v: 1 }],
    ['tokenizer.ggml.eos_token_id', { t: 'u32', v: 2 }],
    ['tokenizer.ggml.unknown_token_id', { t: 'u32', v: 0 }],
  ],
  tensors: [],
});
const files = ggufTokenizer(parseGguf(memoryFile('spm.gguf', bytes)), 'spm.gguf')!;
const tok = new Tokenizer(files.tokenizerJson, files.tokenizerConfig);

describe('GGUF SentencePiece tokenizer', () => {
  it('known cases: merges by score, byte fallback, BOS added', () => {
    // f32 scores in the file are what both sides rank by.
    expect(tok.encode('the tea', { addSpecialTokens: false })).toEqual(spmReference('the tea'));
    expect(tok.encode('x')).toEqual([1, ...spmReference('x')]);
    expect(spmReference('x')).toEqual([tokens.indexOf('▁'), 3 + 'x'.charCodeAt(0)]);
    expect(tok.decode(tok.encode('and the tea 中'), { skipSpecialTokens: true })).toBe('and the tea 中');
  });

  it('tokenBytes: byte tokens (<0xNN>) as their byte, pieces with ▁ as a space: the text\'s UTF-8, a leading space included', () => {
    for (const text of ['and the tea 中', 'é🙂 x']) {
      const ids = tok.encode(text, { addSpecialTokens: false });
      expect(ids.flatMap((id) => Array.from(tok.tokenBytes(id)))).toEqual(Array.from(new TextEncoder().encode(' ' + text)));
    }
  });

  it('random text: the same ids as llama.cpp\'s algorithm, and decoding gives the text back', () => {
    const alphabet = fc.constantFrom('a', 'b', 'd', 'e', 'g', 'h', 'i', 'n', 't', 'é', ' ', 'x', '中', '🙂');
    fc.assert(fc.property(fc.array(alphabet, { minLength: 1, maxLength: 24 }).map((c) => c.join('')), (text) => {
      expect(tok.encode(text, { addSpecialTokens: false })).toEqual(spmReference(text));
      expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text);
    }), { numRuns: 500 });
  });
});
