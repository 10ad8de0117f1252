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
import { SPM_FILES as files, SPM_SCORES as scores, SPM_TOKENS as tokens, SPM_TYPES as types } from './reference/spm.js';
import { parseConfig } from '../src/formats/config.js';
import { writeGguf } from '../src/formats/gguf-write.js';
import type { TensorSource } from '../src/formats/tensor-source.js';
import { makeRandomCheckpoint, tinyLlamaConfig, type Tensors } from './reference/model.js';

const inMemoryTensors = (t: Tensors): TensorSource => ({ names: () => Object.keys(t), shape: (n) => t[n]?.shape, read: (n, out) => out.set(t[n].data) });

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

describe('a SentencePiece tokenizer.json written to GGUF (llama.cpp\'s "llama" model)', () => {
  // The tokenizer.json the fixture's GGUF reads as: Llama 2's form (Prepend + Replace normalizer,
  // BPE with byte fallback, merges ranked by the score of the token they make).
  const json = files.tokenizerJson as Record<string, any>;
  const written = (tokenizerJson: unknown) => {
    const config = tinyLlamaConfig({ vocab_size: tokens.length, tie_word_embeddings: true, num_hidden_layers: 1 });
    return writeGguf(parseConfig(config), inMemoryTensors(makeRandomCheckpoint(config, 1)), { tokenizerJson, tokenizerConfig: files.tokenizerConfig });
  };

  it('reads back as the same tokenizer: scores rank the merges as tokenizer.json does, byte tokens and specials typed', () => {
    const g = parseGguf(memoryFile('w.gguf', written(json)));
    expect(g.metadata.get('tokenizer.ggml.model')).toBe('llama');
    expect(g.metadata.get('tokenizer.ggml.add_space_prefix')).toBe(true);
    expect(Array.from(g.metadata.get('tokenizer.ggml.token_type') as ArrayLike<number>)).toEqual(types);
    const back = ggufTokenizer(g, 'w.gguf')!;
    expect((back.tokenizerJson as any).model.merges).toEqual(json.model.merges);
    const mine = new Tokenizer(back.tokenizerJson, back.tokenizerConfig);
    const alphabet = fc.constantFrom('a', 'b', 'd', 'e', 'g', 'h', 'i', 'n', 't', 'é', ' ', 'x', '中', '🙂');
    fc.assert(fc.property(fc.array(alphabet, { minLength: 1, maxLength: 24 }).map((c) => c.join('')), (text) => {
      expect(mine.encode(text)).toEqual(tok.encode(text));
    }), { numRuns: 300 });
  });

  it('forms llama.cpp would tokenize otherwise are refused, naming what', () => {
    const m = json.model;
    const swapped = [...m.merges];
    const i = swapped.indexOf('▁ the'), j = swapped.indexOf('▁t he');
    // The two merges making "▁the", parted by another.
    [swapped[i], swapped[Math.max(i, j) + 1]] = [swapped[Math.max(i, j) + 1], swapped[i]];
    const cases: [unknown, RegExp][] = [
      [{ ...json, model: { ...m, merges: m.merges.filter((x: string) => x !== 'a b') } }, /token "ab" is two tokens joined but no merge makes it/],
      [{ ...json, model: { ...m, merges: swapped } }, /the merges making .* are not ranked together/],
      [{ ...json, normalizer: null, pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false } }, /Prepend\("▁"\) \+ Replace\(" ", "▁"\) and no pre_tokenizer/],
    ];
    for (const [bad, message] of cases) expect(() => written(bad)).toThrow(message);
  });
});
