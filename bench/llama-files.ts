// The GGUF files both llama.cpp peers read (bench/llama-peers.ts natively, bench/wllama-peer.ts in
// Chromium) and the prompt they are timed on: the e2e bench's 2-layer V2-Lite-dims checkpoint
// (bench/e2e/checkpoint.ts) with query compression (q_lora_rank 1536, DeepSeek-V2's), because
// llama.cpp reads a deepseek2 file without q_lora_rank only at 26 or 27 layers (V2-Lite's count).
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expectedTensors, parseConfig, quantizeToFile } from '../src/internal.js';
import { E2E_CONFIG, tensorValues } from './e2e/checkpoint.js';

/** llama-bench's context for both tests: pp512, and tg at 512 of context. */
export const CONTEXT = 512;
export const CONFIG = { ...E2E_CONFIG, q_lora_rank: 1536, first_k_dense_replace: 2 };
export const GGUF_TYPES = ['f32', 'q8_0', 'q4_0'] as const;
export type GgufType = typeof GGUF_TYPES[number];

/**
 * The prompt as text: 511 deterministic printable ASCII characters. The built-in model's tokenizer
 * is byte-level without merges, so its ids are the BOS token and one id per byte: 512 tokens under
 * ours and under llama.cpp alike (wllama takes a prompt as text only).
 */
export function promptText(): string {
  let s = 7;
  return String.fromCharCode(...Array.from({ length: CONTEXT - 1 }, () => { s = (Math.imul(s, 1103515245) + 12345) >>> 0; return 32 + (s >>> 16) % 95; }));
}

/** BOS, the fortune tokenizer's `<|begin_of_text|>` (its tokenizer_config adds it). */
export const BOS = 256;

/** The prompt as ids: BOS, then each byte of promptText(). */
export function prompt(): number[] {
  return [BOS, ...Array.from(promptText(), (c) => c.charCodeAt(0))];
}

/** The folder the files are kept in between runs (the temp folder). */
export const GGUF_DIR = path.join(os.tmpdir(), 'mla-wasm-bench', 'llama-peers-v2lite-2l-q1536-v1');

/** The GGUF of `type`, written once by our writer (tokenizer: the built-in model's, for llama.cpp's vocabulary). */
export async function ggufFile(type: GgufType, log: (s: string) => void): Promise<string> {
  const file = path.join(GGUF_DIR, `${type}.gguf`);
  if (existsSync(file)) return file;
  mkdirSync(GGUF_DIR, { recursive: true });
  log(`  writing ${file} …`);
  const c = parseConfig(CONFIG);
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of expectedTensors(c)) tensors[name] = { shape, data: tensorValues(name, shape) };
  const fortune = (n: string) => JSON.parse(readFileSync(new URL(`../models/fortune-mla/${n}`, `file://${process.cwd()}/bench/`), 'utf8'));
  await quantizeToFile({ config: CONFIG, tensors, tokenizerJson: fortune('tokenizer.json'), tokenizerConfig: fortune('tokenizer_config.json') } as never,
    file, { type: type.toUpperCase() } as never);
  return file;
}

/** The median (the upper one of an even count). */
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
