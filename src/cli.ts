#!/usr/bin/env node
// mla-wasm command line (Node). `mla-wasm generate [--model DIR] [--prompt TEXT] [--max-tokens N]`
// streams a greedy continuation of the prompt, then prints prefill/decode speed and cache sizes.
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import { MlaError } from './errors.js';
import { loadModel } from './model.js';

// Node 20 compiles relaxed SIMD only behind a V8 flag; a CLI may turn it on before the first
// compile. The library itself still chooses the build by validating a tiny module.
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');

const USAGE = `usage: mla-wasm generate [--model DIR] [--prompt TEXT] [--max-tokens N] [--simd auto|simd|relaxed]`;

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

async function generate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: 'string' },
      prompt: { type: 'string', default: 'Q: What is the meaning of life?\nA:' },
      'max-tokens': { type: 'string', default: '200' },
      simd: { type: 'string', default: 'auto' },
    },
  });
  const maxTokens = Number(values['max-tokens']);
  if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new MlaError('BAD_INPUT', `--max-tokens must be a positive integer`);
  const simd = values.simd as 'auto' | 'simd' | 'relaxed';
  if (!['auto', 'simd', 'relaxed'].includes(simd)) throw new MlaError('BAD_INPUT', `--simd must be auto, simd or relaxed`);

  const model = await loadModel(values.model, { simd });
  const c = model.config;
  // The default model's vocabulary is bytes (0–255) plus specials; the tokenizer arrives with
  // Hugging Face tokenizer.json support.
  const prompt = [...(c.bosTokenId !== null ? [c.bosTokenId] : []), ...new TextEncoder().encode(values.prompt)];
  const session = model.createSession({ contextLength: Math.min(c.maxPositions, prompt.length + maxTokens) });
  const decoder = new TextDecoder();
  process.stdout.write(values.prompt);

  let t0 = performance.now();
  let logits = session.prefill(prompt);
  const prefillMs = performance.now() - t0;
  let decoded = 0;
  t0 = performance.now();
  while (decoded < maxTokens && session.position < session.capacity) {
    const id = argmax(logits);
    if (c.eosTokenIds.includes(id)) break;
    if (id < 256) process.stdout.write(decoder.decode(new Uint8Array([id]), { stream: true }));
    logits = session.step(id);
    decoded++;
  }
  const decodeMs = performance.now() - t0;
  process.stdout.write(decoder.decode() + '\n\n');
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  console.log(
    `prefill ${prompt.length} tok in ${prefillMs.toFixed(1)} ms (${(prompt.length / prefillMs * 1000).toFixed(0)} tok/s), ` +
    `decode ${decoded} tok in ${decodeMs.toFixed(1)} ms (${(decoded / decodeMs * 1000).toFixed(0)} tok/s), ${model.simd} SIMD`);
  console.log(
    `KV cache: ${kib(session.kvCacheBytes)} for ${session.position} tokens ` +
    `(${model.kvCacheBytesPerToken} B/token; MHA with the same heads would need ${model.mhaCacheBytesPerToken} B/token, ` +
    `${(model.mhaCacheBytesPerToken / model.kvCacheBytesPerToken).toFixed(1)}× more)`);
  session.dispose();
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'generate') return generate(rest);
  if (command === undefined || command === '--help' || command === '-h') { console.log(USAGE); return; }
  throw new MlaError('BAD_INPUT', `unknown command ${JSON.stringify(command)}\n${USAGE}`);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  // One clear line for what we expect to go wrong; anything else is a bug worth its stack.
  if (e instanceof MlaError || (e as { code?: string })?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    console.error(`mla-wasm: ${(e as Error).message}`);
    process.exit(1);
  }
  throw e;
});
