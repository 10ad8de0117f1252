// A converted model as a Hugging Face folder: config.json, model.safetensors (F32) and the source's
// tokenizer files. Written under a temporary name beside `out` and renamed at the end, so a
// failure leaves no half-written folder.
import { MlaError } from '../errors.js';
import type { ConvertedModel } from './convert.js';

/** Files a model folder holds; `out` may already hold these and nothing else (a model written before). */
const MODEL_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json',
  'special_tokens_map.json'];

export async function writeConvertedFolder(model: ConvertedModel, out: string): Promise<void> {
  // Imported here, not at the top: index.ts exports this, and the package must load in a browser.
  const { lstat, mkdir, readdir, rename, rm, writeFile } = await import('node:fs/promises');
  const { dirname, basename, join } = await import('node:path');
  // Replacing `out` must not delete anything else that lives there.
  const st = await lstat(out).catch(() => null);
  if (st && !st.isDirectory()) throw new MlaError('BAD_INPUT', `${out} exists and is not a folder: choose a new or empty folder`);
  if (st) {
    const known = new Set([...MODEL_FILES, ...Object.keys(model.extras)]);
    const others = (await readdir(out, { withFileTypes: true })).filter((e) => !e.isFile() || !known.has(e.name)).map((e) => e.name);
    if (others.length) {
      throw new MlaError('BAD_INPUT', `${out} holds ${others.length} file(s) that are not a model's (${others.slice(0, 4).join(', ')}` +
        `${others.length > 4 ? ', …' : ''}): choose a new or empty folder`);
    }
  }
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  try {
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    await writeFile(join(tmp, 'config.json'), JSON.stringify(model.config, null, 2) + '\n');
    for (const [name, bytes] of Object.entries(model.extras)) if (bytes) await writeFile(join(tmp, name), bytes);
    await writeSafetensorsFile(join(tmp, 'model.safetensors'), model.tensors);
    await rm(out, { recursive: true, force: true });
    await rename(tmp, out);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    if (e instanceof MlaError) throw e;
    throw new MlaError('BAD_INPUT', `cannot write ${out}: ${(e as Error).message}`);
  }
}

/** The F32 safetensors header (padded to 8 bytes) for the tensors in insertion order. */
export function safetensorsHeader(tensors: Map<string, { shape: number[] }>): Uint8Array {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const [name, t] of tensors) {
    const bytes = 4 * t.shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(new TextEncoder().encode(json), 8);
  return head;
}

export const tensorBytes = (t: Float32Array): Uint8Array => new Uint8Array(t.buffer, t.byteOffset, t.byteLength);

/** Written one tensor at a time. */
async function writeSafetensorsFile(path: string, tensors: ConvertedModel['tensors']): Promise<void> {
  const f = await (await import('node:fs/promises')).open(path, 'w');
  try {
    await f.write(safetensorsHeader(tensors));
    for (const t of tensors.values()) await f.write(tensorBytes(t.data));
  } finally {
    await f.close();
  }
}
