// One GGUF file as a model: its header parsed and checked, its metadata as a config and a
// tokenizer, its tensors under the names the model expects. No tensor data is read here.
import { MlaError } from '../errors.js';
import type { ByteFile } from './byte-file.js';
import { parseConfig } from './config.js';
import { parseGguf, type GgufFile } from './gguf.js';
import { ggufModel } from './gguf-config.js';
import { ggufTensorSource, ROPE_FREQS } from './gguf-tensors.js';
import { ggufTokenizer } from './gguf-tokenizer.js';
import type { TensorSource } from './tensor-source.js';
import type { TokenizerFiles } from './tokenizer.js';

export interface OpenedGguf {
  gguf: GgufFile;
  /** The metadata as a config.json object. */
  config: Record<string, unknown>;
  tensors: TensorSource;
  tokenizerFiles: TokenizerFiles;
}

/**
 * llama's rope_freqs tensor (llama.cpp's converter writes it for Llama 3.1+ rope scaling): one
 * divisor per rotary frequency, which the config carries as rope_freq_factors.
 */
function ropeFreqs(file: ByteFile, gguf: GgufFile): number[] | undefined {
  const t = gguf.tensors.get(ROPE_FREQS);
  if (!t || gguf.metadata.get('general.architecture') !== 'llama') return undefined;
  if (t.type !== 'F32' || t.ne.length !== 1) {
    throw new MlaError('BAD_CHECKPOINT', `${file.name}: ${ROPE_FREQS} must be F32 of one dimension, got ${t.type} [${t.ne}]`);
  }
  const bytes = new Uint8Array(t.bytes);
  file.read(t.begin, bytes);
  return Array.from(new Float32Array(bytes.buffer, 0, t.ne[0]));
}

export function openGguf(file: ByteFile): OpenedGguf {
  const gguf = parseGguf(file);
  const { config, layout } = ggufModel(gguf, file.name);
  const factors = ropeFreqs(file, gguf);
  if (factors) config.rope_freq_factors = factors;
  try {
    parseConfig(config);
  } catch (e) {
    // parseConfig speaks of config.json; here the values came from the file's metadata.
    if (e instanceof MlaError) throw new MlaError(e.code, e.message.replace(/^config\.json/, `${file.name} (metadata)`));
    throw e;
  }
  const tokenizer = ggufTokenizer(gguf, file.name);
  return {
    gguf,
    config,
    tensors: ggufTensorSource(file, gguf, layout),
    tokenizerFiles: tokenizer ? { tokenizerJson: tokenizer.tokenizerJson, tokenizerConfig: tokenizer.tokenizerConfig } : {},
  };
}
