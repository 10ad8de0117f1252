// One GGUF file as a model: its header parsed and checked, its metadata as a config and a
// tokenizer, its tensors under the names the model expects. No tensor data is read here.
import { MlaError } from '../errors.js';
import type { ByteFile } from './byte-file.js';
import { parseConfig } from './config.js';
import { parseGguf, type GgufFile } from './gguf.js';
import { ggufModel } from './gguf-config.js';
import { ggufTensorSource } from './gguf-tensors.js';
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

export function openGguf(file: ByteFile): OpenedGguf {
  const gguf = parseGguf(file);
  const { config, layout } = ggufModel(gguf, file.name);
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
