// The end-to-end bench's checkpoint: DeepSeek-V2-Lite's attention and dense MLP widths, 2 layers,
// F32, deterministic random weights, written once as config.json + model.safetensors to the temp
// folder (2.4 GB with the ONNX file beside it) and kept between runs.
import { closeSync, existsSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expectedTensors, type ModelConfig } from '../../src/internal.js';

/** Hugging Face config.json of the checkpoint: V2-Lite's attention and dense MLP widths, 2 layers. */
export const E2E_CONFIG = {
  architectures: ['DeepseekV2ForCausalLM'],
  model_type: 'deepseek_v2',
  vocab_size: 32000,
  hidden_size: 2048,
  intermediate_size: 10944,
  num_hidden_layers: 2,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  q_lora_rank: null,
  kv_lora_rank: 512,
  qk_nope_head_dim: 128,
  qk_rope_head_dim: 64,
  v_head_dim: 128,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  max_position_embeddings: 4096,
  rope_scaling: null,
  n_routed_experts: null,
  tie_word_embeddings: false,
  torch_dtype: 'float32',
};

/** Deterministic values of tensor `name`: uniform in ±1/√fan-in for matrices, 1 ± 0.1 for norms. */
export function tensorValues(name: string, shape: number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  let s = 0x9e3779b9;
  for (let i = 0; i < name.length; i++) s = Math.imul(s ^ name.charCodeAt(i), 0x01000193) >>> 0;
  const norm = shape.length === 1;
  const scale = norm ? 0.1 : 1 / Math.sqrt(shape[shape.length - 1]);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2147483648 - 1;
    out[i] = norm ? 1 + u * scale : u * scale;
  }
  return out;
}

/** The folder of the generated checkpoint and ONNX files (kept between runs; 2.4 GB). */
export function e2eDir(): string {
  return path.join(os.tmpdir(), 'mla-wasm-bench', 'e2e-v2lite-2l-v1');
}

/** Write config.json and model.safetensors (F32) unless they are there. */
export function writeCheckpoint(dir: string, c: ModelConfig, log: (s: string) => void): void {
  const done = path.join(dir, 'model.safetensors');
  if (existsSync(done)) return;
  log(`  writing the checkpoint to ${dir} …`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(E2E_CONFIG, null, 2));
  const shapes = [...expectedTensors(c)];
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, shape] of shapes) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const tmp = done + '.tmp';
  const fd = openSync(tmp, 'w');
  const len = new Uint8Array(8);
  new DataView(len.buffer).setUint32(0, json.length, true);
  writeSync(fd, len);
  writeSync(fd, new TextEncoder().encode(json));
  for (const [name, shape] of shapes) {
    const v = tensorValues(name, shape);
    writeSync(fd, new Uint8Array(v.buffer));
  }
  closeSync(fd);
  renameSync(tmp, done);
}
