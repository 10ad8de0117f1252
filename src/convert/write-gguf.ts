// A converted model as a deepseek2 GGUF file (llama.cpp's layout), through the GGUF writer that
// `mla-wasm quantize` uses: the model is handed over as an in-memory folder.
import { MlaError } from '../errors.js';
import { quantizeToFile } from '../formats/gguf-quantize.js';
import type { ConvertedModel } from './convert.js';
import { safetensorsHeader, tensorBytes } from './write-folder.js';

export interface ConvertedGgufOptions {
  /** The matrices' type: 'f32' (default: the converted weights exactly), 'f16', 'bf16', 'q8_0' or 'q4_0'. */
  type?: string;
  /** Bytes written so far, out of the total. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Writes `path` (temporary name, renamed when complete). llama.cpp's deepseek2 always applies
 * attn_kv_a_norm, and no norm weight can undo an RMSNorm's rescaling, so only a model converted
 * with `latentNorm` can be written; anything else is a BAD_INPUT error.
 */
export async function writeConvertedGguf(model: ConvertedModel, path: string, options: ConvertedGgufOptions = {}): Promise<void> {
  if (model.config.qk_latent_layernorm !== true) {
    throw new MlaError('BAD_INPUT', 'a deepseek2 GGUF needs the latent RMSNorm (llama.cpp always applies attn_kv_a_norm, and no norm weight reproduces a latent without one): convert with latentNorm (--latent-norm, which needs a calibration text)');
  }
  const head = safetensorsHeader(model.tensors);
  const weights = new Uint8Array(head.length + [...model.tensors.values()].reduce((n, t) => n + 4 * t.data.length, 0));
  weights.set(head, 0);
  let at = head.length;
  for (const t of model.tensors.values()) { weights.set(tensorBytes(t.data), at); at += 4 * t.data.length; }
  const files = new Map<string, Uint8Array>([['config.json', new TextEncoder().encode(JSON.stringify(model.config))], ['model.safetensors', weights]]);
  for (const [name, bytes] of Object.entries(model.extras)) if (bytes) files.set(name, bytes);
  await quantizeToFile(files, path, { type: options.type ?? 'f32', onProgress: options.onProgress });
}
