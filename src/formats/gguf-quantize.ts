// A model (any source loadModel takes) written as a GGUF file: in memory, or to a file on disk
// under a temporary name renamed at the end, so that a half-written file never has the final name.
import { checkOptions, MlaError } from '../errors.js';
import { parseConfig } from './config.js';
import { ggufChunks, planGguf, type GgufWriteOptions } from './gguf-write.js';
import { tokenizerFilesOf } from './model-files.js';
import { openSource, type ModelSource } from './source.js';
import type { StoredType } from './tensor-source.js';

export interface QuantizeOptions {
  /** The type of the matrices: 'F32', 'F16', 'BF16', 'Q8_0' or 'Q4_0' (any case; default 'Q8_0'). */
  type?: string;
  /** Hugging Face tensor names kept F32. */
  keep?: string[];
  /** Called as the file is written: bytes so far, out of the total. */
  onProgress?: (done: number, total: number) => void;
  /** Stops the writing (ABORTED); quantizeToFile then leaves no file behind. */
  signal?: AbortSignal;
}

const OPTIONS = Object.keys({ type: 1, keep: 1, onProgress: 1, signal: 1 } satisfies Record<keyof QuantizeOptions, 1>);

function checkAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new MlaError('ABORTED', 'writing the GGUF file was aborted');
}
const TYPES: StoredType[] = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0'];

async function prepare(source: ModelSource, options: QuantizeOptions, call: string) {
  checkOptions(options, OPTIONS, `${call}() options`);
  const type = (options.type ?? 'Q8_0').toUpperCase() as StoredType;
  if (!TYPES.includes(type)) throw new MlaError('BAD_INPUT', `type ${JSON.stringify(options.type)} is not one of ${TYPES.map((t) => t.toLowerCase()).join(', ')}`);
  if (options.keep !== undefined && !(Array.isArray(options.keep) && options.keep.every((k) => typeof k === 'string'))) {
    throw new MlaError('BAD_INPUT', 'keep must be an array of tensor names');
  }
  const src = await openSource(source);
  const config = parseConfig(src.config);
  const names = new Set(src.tensors.names());
  const unknown = (options.keep ?? []).filter((k) => !names.has(k));
  if (unknown.length) throw new MlaError('BAD_INPUT', `keep names tensors the model does not have: ${unknown.join(', ')}`);
  const t = tokenizerFilesOf(src, source);
  const tokenizer = t.tokenizerJson === undefined ? null
    : { tokenizerJson: t.tokenizerJson, tokenizerConfig: t.tokenizerConfig, chatTemplate: t.chatTemplate, generationConfig: t.generationConfig };
  const write: GgufWriteOptions = { type, keep: options.keep, name: src.name.split(/[/\\]/).filter(Boolean).pop() };
  return planGguf(config, src.tensors, tokenizer, write);
}

/** The model as GGUF bytes. */
export async function quantize(source: ModelSource, options: QuantizeOptions = {}): Promise<Uint8Array> {
  const plan = await prepare(source, options, 'quantize');
  const out = new Uint8Array(plan.size);
  let at = 0;
  options.onProgress?.(0, plan.size);
  for (const chunk of ggufChunks(plan)) {
    checkAborted(options.signal);
    out.set(chunk, at);
    at += chunk.length;
    options.onProgress?.(at, plan.size);
  }
  return out;
}

/** The model written to `path` as GGUF (Node, Deno, Bun), through a temporary file renamed at the end. */
export async function quantizeToFile(source: ModelSource, path: string, options: QuantizeOptions = {}): Promise<void> {
  if (typeof path !== 'string' || path === '') throw new MlaError('BAD_INPUT', 'the output path must be a non-empty string');
  const plan = await prepare(source, options, 'quantizeToFile');
  const fs = await import('node:fs');
  const tmp = `${path}.${globalThis.process?.pid ?? Date.now()}.partial`;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    let at = 0;
    options.onProgress?.(0, plan.size);
    for (const chunk of ggufChunks(plan)) {
      for (let done = 0; done < chunk.length;) done += fs.writeSync(fd, chunk, done, chunk.length - done);
      at += chunk.length;
      options.onProgress?.(at, plan.size);
      await new Promise<void>((r) => setImmediate(r));
      checkAborted(options.signal);
    }
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    if (e instanceof MlaError) throw e;
    throw new MlaError('BAD_INPUT', `cannot write ${path}: ${(e as Error).message}`);
  }
}
