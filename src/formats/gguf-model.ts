// One GGUF file as a model: its header parsed and checked, its metadata as a config and a
// tokenizer, its tensors under the names the model expects. No tensor data is read here.
import { MlaError } from '../errors.js';
import type { ByteFile } from './byte-file.js';
import { parseConfig } from './config.js';
import { parseGguf, type GgufFile } from './gguf.js';
import { ggufModel } from './gguf-config.js';
import { ggufTensorSource, ROPE_FACTORS, ROPE_FREQS } from './gguf-tensors.js';
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
 * A rope scaling tensor: llama's rope_freqs (llama.cpp's converter writes it for Llama 3.1+), one
 * divisor per rotary frequency, which the config carries as rope_freq_factors; minicpm3's LongRoPE
 * rope_factors_short / _long, its rope_scaling.short_factor / long_factor.
 */
function vector(file: ByteFile, gguf: GgufFile, name: string): number[] | undefined {
  const t = gguf.tensors.get(name);
  if (!t) return undefined;
  if (t.type !== 'F32' || t.ne.length !== 1) {
    throw new MlaError('BAD_CHECKPOINT', `${file.name}: ${name} must be F32 of one dimension, got ${t.type} [${t.ne}]`);
  }
  const bytes = new Uint8Array(t.bytes);
  file.read(t.begin, bytes);
  return Array.from(new Float32Array(bytes.buffer, 0, t.ne[0]));
}

/** llama.cpp's general.sampling.* keys as the generation_config.json they came from (temp 0: greedy), or null. */
function samplingDefaults(gguf: GgufFile): Record<string, unknown> | null {
  // f32 values as the shortest decimal that rounds to them (0.8, not 0.800000011920929).
  const short = (v: unknown) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return v;
    for (let p = 1; p < 17; p++) if (Math.fround(Number(v.toPrecision(p))) === v) return Number(v.toPrecision(p));
    return v;
  };
  const get = (key: string) => short(gguf.metadata.get(`general.sampling.${key}`));
  const out: Record<string, unknown> = {};
  const temp = get('temp');
  if (temp !== undefined) Object.assign(out, typeof temp === 'number' && temp <= 0 ? { do_sample: false } : { do_sample: true, temperature: temp });
  for (const [key, hf] of [['top_k', 'top_k'], ['top_p', 'top_p'], ['penalty_repeat', 'repetition_penalty']]) {
    if (get(key) !== undefined) out[hf] = get(key);
  }
  return Object.keys(out).length ? out : null;
}

export function openGguf(file: ByteFile): OpenedGguf {
  const gguf = parseGguf(file);
  const { config, layout } = ggufModel(gguf, file.name);
  const arch = gguf.metadata.get('general.architecture');
  if (arch === 'llama') {
    const factors = vector(file, gguf, ROPE_FREQS);
    if (factors) config.rope_freq_factors = factors;
  }
  if (arch === 'minicpm3') {
    const short = vector(file, gguf, ROPE_FACTORS.short), long = vector(file, gguf, ROPE_FACTORS.long);
    if (short || long) {
      config.rope_scaling = { rope_type: 'longrope', short_factor: short ?? long, long_factor: long ?? short,
        original_max_position_embeddings: gguf.metadata.get('minicpm3.rope.scaling.original_context_length') ?? config.max_position_embeddings };
    }
  }
  if (arch === 'phi3') {
    const short = vector(file, gguf, ROPE_FACTORS.short), long = vector(file, gguf, ROPE_FACTORS.long);
    if (!short !== !long) throw new MlaError('BAD_CHECKPOINT', `${file.name}: ${short ? ROPE_FACTORS.short : ROPE_FACTORS.long} without ${short ? ROPE_FACTORS.long : ROPE_FACTORS.short}`);
    // Without the attn_factor key llama.cpp multiplies by 1, and so does this.
    if (short && long) config.rope_scaling = { type: 'longrope', short_factor: short, long_factor: long, attention_factor: gguf.metadata.get('phi3.rope.scaling.attn_factor') ?? 1 };
  }
  try {
    parseConfig(config);
  } catch (e) {
    // parseConfig speaks of config.json; here the values came from the file's metadata.
    if (e instanceof MlaError) throw new MlaError(e.code, e.message.replace(/^config\.json/, `${file.name} (metadata)`));
    throw e;
  }
  const tokenizer = ggufTokenizer(gguf, file.name);
  const generationConfig = samplingDefaults(gguf);
  return {
    gguf,
    config,
    tensors: ggufTensorSource(file, gguf, layout),
    tokenizerFiles: {
      ...(tokenizer ? { tokenizerJson: tokenizer.tokenizerJson, tokenizerConfig: tokenizer.tokenizerConfig } : {}),
      ...(generationConfig ? { generationConfig } : {}),
    },
  };
}
