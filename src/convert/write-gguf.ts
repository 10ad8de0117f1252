// A converted model as a deepseek2 GGUF file (llama.cpp's layout), through the GGUF writer that
// `mla-wasm quantize` uses: the model is handed over as an in-memory folder.
import { checkOptions, MlaError } from '../errors.js';
import { quantizeToFile } from '../formats/gguf-quantize.js';
import type { ConvertedModel } from './convert.js';
import { safetensorsHeader } from './write-folder.js';

export interface ConvertedGgufOptions {
  /** The matrices' type: 'f32' (default: the converted weights exactly), 'f16', 'bf16', 'q8_0' or 'q4_0'. */
  type?: string;
  /** Bytes written so far, out of the total. */
  onProgress?: (done: number, total: number) => void;
}

const OPTIONS = Object.keys({ type: 1, onProgress: 1 } satisfies Record<keyof ConvertedGgufOptions, 1>);

/** A tensor of the in-memory folder: its shape, and its f32 values written into `out` when asked. */
interface FolderTensor { shape: number[]; fill: (out: Float32Array) => void }

/**
 * llama.cpp 3.21.1 (src/models/deepseek2.cpp, load_arch_hparams) takes a deepseek2 file of 26 or
 * 27 layers, or 48 with a 128256-token vocabulary, for V2-Lite-like: it then reads no
 * q_lora_rank and wants attn_q. Any other file must have q_lora_rank, attn_q_a and attn_q_b.
 */
const llamaCppWantsAttnQ = (layers: number, vocab: number): boolean => layers === 26 || layers === 27 || (layers === 48 && vocab === 128256);

/**
 * The tensors and config.json written, with q_proj as a query LoRA pair where llama.cpp needs one:
 * the input norm's weight w is folded into the matrices that read the norm's output (q and
 * kv_a_proj_with_mqa times diag(w)), input_layernorm becomes ones, q_a_proj the identity and
 * q_a_layernorm ones. q_a then gives back rmsnorm(h), whose mean square is m/(m + ε) for m the
 * mean square of h, so the second RMSNorm rescales q by 1/√(m/(m+ε) + ε): exact up to about
 * ε/(2m). The fold needs no 1/w, so a zero in w is no special case. Costs hidden² numbers per
 * layer (q_a) in the file.
 */
function ggufFolderTensors(model: ConvertedModel): { config: Record<string, unknown>; tensors: Map<string, FolderTensor> } {
  const tensors = new Map<string, FolderTensor>();
  for (const [name, t] of model.tensors) tensors.set(name, { shape: t.shape, fill: (out) => out.set(t.data) });
  const c = model.config, layers = c.num_hidden_layers as number, hidden = c.hidden_size as number;
  if (c.q_lora_rank || llamaCppWantsAttnQ(layers, c.vocab_size as number)) return { config: c, tensors };
  const get = (name: string) => {
    const t = model.tensors.get(name);
    if (!t) throw new MlaError('MISSING_TENSOR', `the converted model has no tensor "${name}"`);
    return t;
  };
  const ones: FolderTensor = { shape: [hidden], fill: (out) => out.fill(1) };
  const identity: FolderTensor = { shape: [hidden, hidden], fill: (out) => { out.fill(0); for (let i = 0; i < hidden; i++) out[i * hidden + i] = 1; } };
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`, w = get(p + 'input_layernorm.weight').data;
    // One f32 rounding of each product, as the norm's own multiply has.
    const timesW = (name: string): FolderTensor => {
      const t = get(name);
      return { shape: t.shape, fill: (out) => { for (let i = 0; i < out.length; i++) out[i] = t.data[i] * w[i % hidden]; } };
    };
    const q = p + 'self_attn.q_proj.weight', kv = p + 'self_attn.kv_a_proj_with_mqa.weight';
    tensors.set(p + 'self_attn.q_a_proj.weight', identity);
    tensors.set(p + 'self_attn.q_a_layernorm.weight', ones);
    tensors.set(p + 'self_attn.q_b_proj.weight', timesW(q));
    tensors.delete(q);
    tensors.set(kv, timesW(kv));
    tensors.set(p + 'input_layernorm.weight', ones);
  }
  return { config: { ...c, q_lora_rank: hidden }, tensors };
}

/**
 * Writes `path` (temporary name, renamed when complete). llama.cpp's deepseek2 always applies
 * attn_kv_a_norm, and no norm weight can undo an RMSNorm's rescaling, so only a model converted
 * with `latentNorm` can be written; anything else is a BAD_INPUT error.
 */
export async function writeConvertedGguf(model: ConvertedModel, path: string, options: ConvertedGgufOptions = {}): Promise<void> {
  checkOptions(options, OPTIONS, 'writeConvertedGguf() options');
  if (model.config.qk_latent_layernorm !== true) {
    throw new MlaError('BAD_INPUT', 'a deepseek2 GGUF needs the latent RMSNorm (llama.cpp always applies attn_kv_a_norm, and no norm weight reproduces a latent without one): convert with latentNorm (--latent-norm, which needs a calibration text)');
  }
  const { config, tensors } = ggufFolderTensors(model);
  const head = safetensorsHeader(tensors);
  const sizes = [...tensors.values()].map((t) => t.shape.reduce((a, b) => a * b, 1));
  const weights = new Uint8Array(head.length + 4 * sizes.reduce((a, b) => a + b, 0));
  weights.set(head, 0);
  let at = head.length; // a multiple of 8: the header is padded
  [...tensors.values()].forEach((t, i) => { t.fill(new Float32Array(weights.buffer, at, sizes[i])); at += 4 * sizes[i]; });
  const files = new Map<string, Uint8Array>([['config.json', new TextEncoder().encode(JSON.stringify(config))], ['model.safetensors', weights]]);
  for (const [name, bytes] of Object.entries(model.extras)) if (bytes) files.set(name, bytes);
  await quantizeToFile(files, path, { type: options.type ?? 'f32', onProgress: options.onProgress });
}
