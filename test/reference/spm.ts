// A synthetic SentencePiece vocabulary as llama.cpp's GGUF "llama" tokenizer holds it (tokens,
// scores, types), and the tokenizer.json / tokenizer_config.json our reader makes of it: Llama 2's
// form (Prepend + Replace normalizer, BPE with byte fallback). Shared by the SPM tests.
import { memoryFile } from '../../src/formats/byte-file.js';
import { parseGguf } from '../../src/formats/gguf.js';
import { ggufTokenizer } from '../../src/formats/gguf-tokenizer.js';
import { rawGguf, type RawValue } from './gguf-bytes.js';

const PIECES = ['▁', 'a', 'b', 'd', 'e', 'g', 'h', 'i', 'n', 't', 'é', '▁t', 'he', '▁the', 'an', '▁a', '▁an', 'nd', '▁and',
  'in', 'ing', '▁in', 'ng', 'th', 'the', 'at', '▁at', 'ea', 'tea', '▁tea', 'ee', 'é▁', 'ab', 'ba', 'aba', 'bab'];
export const SPM_TOKENS = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`), ...PIECES];
export const SPM_TYPES = SPM_TOKENS.map((t, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1));
// Distinct scores, not in list order, so that the merge order is the scores' and not the ids'.
export const SPM_SCORES = SPM_TOKENS.map((t, i) => (i < 259 ? 0 : -((i * 37) % 101) - t.length / 10));

const str = (v: string): RawValue => ({ t: 'str', v });
const bytes = rawGguf({
  kvs: [
    ['tokenizer.ggml.model', str('llama')],
    ['tokenizer.ggml.tokens', { t: 'arr', elem: 8, v: SPM_TOKENS.map(str) }],
    ['tokenizer.ggml.scores', { t: 'arr', elem: 6, v: SPM_SCORES.map((v) => ({ t: 'f32', v })) }],
    ['tokenizer.ggml.token_type', { t: 'arr', elem: 5, v: SPM_TYPES.map((v) => ({ t: 'i32', v })) }],
    ['tokenizer.ggml.bos_token_id', { t: 'u32', v: 1 }],
    ['tokenizer.ggml.eos_token_id', { t: 'u32', v: 2 }],
    ['tokenizer.ggml.unknown_token_id', { t: 'u32', v: 0 }],
  ],
  tensors: [],
});
export const SPM_FILES = ggufTokenizer(parseGguf(memoryFile('spm.gguf', bytes)), 'spm.gguf')!;
