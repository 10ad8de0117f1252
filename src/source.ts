// Where a model comes from: a folder (path or file: URL), a base URL read with fetch, or an
// in-memory { config, tensors }. Node's fs is imported lazily, only for file: locations.
import { MlaError } from './errors.js';
import { parseSafetensorsHeader, readTensorF32 } from './safetensors.js';
import type { TensorSource } from './weights.js';

/** A tensor given in memory: its shape and its f32 values. */
export interface InMemoryTensor { shape: number[]; data: Float32Array }
export interface InMemoryModel { config: unknown; tensors: Record<string, InMemoryTensor> }
export type ModelSource = string | URL | InMemoryModel;

export interface LoadedSource { config: unknown; tensors: TensorSource; name: string }

/** The built-in default model, shipped with the package. */
export const DEFAULT_MODEL_URL = new URL('../models/fortune-mla/', import.meta.url);

function isInMemory(s: unknown): s is InMemoryModel {
  return typeof s === 'object' && s !== null && !(s instanceof URL) && 'config' in s && 'tensors' in s;
}

export function toUrl(source: string | URL): URL {
  if (source instanceof URL) return source;
  if (/^(https?|file):\/\//.test(source)) return new URL(source);
  // A plain path: resolved against the working directory (Node, Deno and Bun all have one).
  return new URL(`file://${pathToAbsolute(source)}`);
}

function pathToAbsolute(p: string): string {
  const cwd = (globalThis as { process?: { cwd(): string } }).process?.cwd?.() ?? '/';
  const abs = p.startsWith('/') ? p : `${cwd.replace(/\/$/, '')}/${p}`;
  return encodeURI(abs);
}

async function readFile(url: URL): Promise<Uint8Array> {
  if (url.protocol === 'file:') {
    const fs = await import('node:fs/promises');
    try {
      return new Uint8Array(await fs.readFile(url));
    } catch (e) {
      throw new MlaError('BAD_SOURCE', `cannot read ${decodeURI(url.pathname)}: ${(e as Error).message}`);
    }
  }
  let res: Response;
  try { res = await fetch(url); } catch (e) {
    throw new MlaError('BAD_SOURCE', `cannot fetch ${url}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new MlaError('BAD_SOURCE', `cannot fetch ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new MlaError('BAD_CONFIG', `${what} is not valid JSON: ${(e as Error).message}`);
  }
}

/** A safetensors file in memory as a TensorSource. */
export function safetensorsSource(bytes: Uint8Array, fileName: string): TensorSource {
  const header = parseSafetensorsHeader(bytes, fileName);
  return {
    names: () => header.tensors.keys(),
    shape: (name) => header.tensors.get(name)?.shape,
    read: (name, out) => readTensorF32(bytes, header.tensors.get(name)!, out, fileName),
  };
}

function inMemorySource(tensors: Record<string, InMemoryTensor>): TensorSource {
  if (typeof tensors !== 'object' || tensors === null) throw new MlaError('BAD_SOURCE', '`tensors` must be an object of { shape, data }');
  for (const [name, t] of Object.entries(tensors)) {
    const ok = t && Array.isArray(t.shape) && t.shape.every((n) => Number.isInteger(n) && n >= 0) && t.data instanceof Float32Array;
    if (!ok) throw new MlaError('BAD_SOURCE', `tensor ${name} must be { shape: number[], data: Float32Array }`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new MlaError('BAD_SHAPE', `tensor ${name} has ${t.data.length} values but shape [${t.shape}] needs ${n}`);
  }
  return {
    names: () => Object.keys(tensors),
    shape: (name) => tensors[name]?.shape,
    read: (name, out) => out.set(tensors[name].data),
  };
}

/** Read config.json and the weights from a source. */
export async function openSource(source: ModelSource | undefined): Promise<LoadedSource> {
  if (source === undefined) source = DEFAULT_MODEL_URL;
  if (isInMemory(source)) return { config: source.config, tensors: inMemorySource(source.tensors), name: 'in-memory model' };
  if (typeof source !== 'string' && !(source instanceof URL)) {
    throw new MlaError('BAD_SOURCE', 'a model source is a folder path, a URL, or { config, tensors }');
  }
  const base = toUrl(source);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  const config = parseJson(await readFile(new URL('config.json', base)), 'config.json');
  const weights = await readFile(new URL('model.safetensors', base));
  return { config, tensors: safetensorsSource(weights, 'model.safetensors'), name: decodeURI(base.pathname) };
}
