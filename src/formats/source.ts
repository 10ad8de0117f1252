// Where a model comes from:
//   - a folder path (Node, Deno, Bun) or a file: URL, read through a lazy import of node:fs;
//   - a base URL (http:, https:) read with fetch;
//   - a map of file name → bytes ({ 'config.json': …, 'model.safetensors': … } or a Map);
//   - an in-memory { config, tensors }.
// A folder holds config.json and either model.safetensors or the shards that
// model.safetensors.index.json lists, plus tokenizer.json, tokenizer_config.json and
// generation_config.json when present. Every safetensors header (and the shard index) is read and
// checked when the source is opened; tensor data is read later, tensor by tensor, straight into its
// destination. From a folder on disk only the headers are read up front: each tensor's byte range
// is read from the file when it is placed, so the whole file is never held in memory.
import { MlaError } from '../errors.js';
import {
  dtypeBytes, parseSafetensorsHeader, READABLE_DTYPES, readTensorF32At, safetensorsHeaderLength,
  type SafetensorsHeader, type TensorInfo,
} from './safetensors.js';
import type { StoredType, TensorSource } from './tensor-source.js';
import { checkRange, memoryFile, type ByteFile } from './byte-file.js';
import { openGguf } from './gguf-model.js';
import { splitFused } from './fused.js';
import type { TokenizerFiles } from './tokenizer.js';
import { openHubRepo, parseHubId, type HubOptions, type HubRepo } from './hub.js';

export { memoryFile, type ByteFile };

/** A tensor given in memory: its shape and its f32 values. */
export interface InMemoryTensor { shape: number[]; data: Float32Array }
export interface InMemoryModel { config: unknown; tensors: Record<string, InMemoryTensor> }
/** A folder given in memory: file name ('config.json', 'model.safetensors', …) → its bytes. */
export type FileMap = Record<string, Uint8Array> | Map<string, Uint8Array>;
export type ModelSource = string | URL | InMemoryModel | FileMap;

/** Files a folder may hold besides config and weights; their raw bytes are handed on as they are. */
export const EXTRA_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'chat_template.jinja'] as const;
export type ExtraFile = (typeof EXTRA_FILES)[number];

export interface LoadedSource {
  /** config.json, parsed as JSON (not yet checked: parseConfig does that). */
  config: unknown;
  tensors: TensorSource;
  /** The folder path, URL, 'the file map' or 'in-memory model', for messages. */
  name: string;
  /** Raw bytes of those EXTRA_FILES the source has (a key is absent when its file is). */
  extras: Partial<Record<ExtraFile, Uint8Array>>;
  /** The tokenizer files already parsed, from a GGUF file's metadata (instead of extras). */
  tokenizerFiles?: TokenizerFiles;
}

/**
 * The built-in default model, shipped with the package. Computed when asked for: a bundle that
 * drops import.meta (CommonJS, IIFE) can still load other models.
 */
function defaultModelUrl(): URL {
  try {
    return new URL('../../models/fortune-mla/', import.meta.url);
  } catch {
    throw badSource('this build of the package has no import.meta.url, so it cannot find its built-in model: pass a model source');
  }
}

const WEIGHTS = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

function badSource(msg: string): MlaError {
  return new MlaError('BAD_SOURCE', msg);
}

function badCheckpoint(msg: string): MlaError {
  return new MlaError('BAD_CHECKPOINT', msg);
}

// ---------------------------------------------------------------------------------------------
// Safetensors files and shards as one TensorSource
// ---------------------------------------------------------------------------------------------

/** Reads and checks a safetensors file's header: its first 8 bytes, then its first 8 + N bytes. */
export function readSafetensorsHeader(file: ByteFile): SafetensorsHeader {
  const first = new Uint8Array(Math.min(8, file.size));
  file.read(0, first);
  const headerLen = safetensorsHeaderLength(first, file.name, file.size);
  const head = new Uint8Array(8 + headerLen);
  file.read(0, head);
  return parseSafetensorsHeader(head, file.name, file.size);
}

function list(items: string[]): string {
  return items.length > 8 ? `${items.slice(0, 8).join(', ')} … and ${items.length - 8} more` : items.join(', ');
}

/**
 * One TensorSource over safetensors files (a single file, or the shards of an index). With a
 * `weightMap` (the index's tensor → file), the shards must agree with it exactly: every tensor of
 * each shard is listed and mapped to that shard, and every listed tensor is in its shard. No tensor
 * may be in two files, and every tensor must have a dtype that is read (F32, F16, BF16).
 */
export function safetensorsFilesSource(files: ByteFile[], weightMap?: Map<string, string>, indexName = INDEX): TensorSource {
  const where = new Map<string, { file: ByteFile; info: TensorInfo }>();
  for (const file of files) {
    const header = readSafetensorsHeader(file);
    for (const [name, info] of header.tensors) {
      const other = where.get(name);
      if (other) throw badCheckpoint(`tensor "${name}" is in two files: ${other.file.name} and ${file.name}`);
      if (weightMap) {
        const listed = weightMap.get(name);
        if (listed === undefined) throw badCheckpoint(`${indexName}: tensor "${name}" is in ${file.name} but not in the weight_map`);
        if (listed !== file.name) throw badCheckpoint(`${indexName}: maps tensor "${name}" to ${listed}, but it is in ${file.name}`);
      }
      where.set(name, { file, info });
    }
  }
  if (weightMap) {
    for (const [name, fileName] of weightMap) {
      if (!where.has(name)) throw badCheckpoint(`${indexName}: maps tensor "${name}" to ${fileName}, which does not hold it`);
    }
  }
  const unreadable = [...where.values()].filter((t) => !READABLE_DTYPES.includes(t.info.dtype))
    .map((t) => `"${t.info.name}" is ${t.info.dtype} (${t.file.name})`);
  if (unreadable.length) {
    throw new MlaError('UNSUPPORTED_DTYPE',
      `${unreadable.length} tensor(s) have a dtype that is not read (only ${READABLE_DTYPES.join(', ')}): ${list(unreadable)}`);
  }
  return placedSource(where);
}

/** Tensors at byte ranges of files as a TensorSource; rowsOf gives a run of rows as such a range. */
function placedSource(where: Map<string, { file: ByteFile; info: TensorInfo }>): TensorSource {
  return {
    names: () => where.keys(),
    shape: (name) => where.get(name)?.info.shape,
    read: (name, out) => {
      const t = where.get(name);
      if (!t) throw new MlaError('MISSING_TENSOR', `no tensor "${name}" in the checkpoint`);
      readTensorF32At((position, into) => t.file.read(position, into), t.info, out, t.file.name);
    },
    stored: (name) => where.get(name)?.info.dtype as StoredType | undefined,
    rowsOf: (name, row0, rows) => {
      const t = where.get(name);
      if (!t) throw new MlaError('MISSING_TENSOR', `no tensor "${name}" in the checkpoint`);
      const [all, cols] = t.info.shape, size = dtypeBytes(t.info.dtype) ?? 0;
      if (t.info.shape.length !== 2 || row0 < 0 || row0 + rows > all) throw new MlaError('BAD_INPUT', `rows [${row0}, ${row0 + rows}) of tensor "${name}" [${t.info.shape}]`);
      const begin = t.info.begin + row0 * cols * size;
      return placedSource(new Map([[name, { file: t.file, info: { ...t.info, shape: [rows, cols], begin, end: begin + rows * cols * size } }]]));
    },
    read16: (name, out) => {
      const t = where.get(name);
      if (!t) throw new MlaError('MISSING_TENSOR', `no tensor "${name}" in the checkpoint`);
      if (t.info.dtype !== 'F16' && t.info.dtype !== 'BF16') {
        throw new MlaError('UNSUPPORTED_DTYPE', `${t.file.name}: tensor "${name}" is ${t.info.dtype}, not 16-bit`);
      }
      if (t.info.end - t.info.begin !== out.length * 2) {
        throw new MlaError('BAD_INPUT', `read16: tensor "${name}" has ${(t.info.end - t.info.begin) / 2} elements, output buffer has ${out.length}`);
      }
      // Safetensors is little-endian, as is WebAssembly and every host this runs on.
      t.file.read(t.info.begin, new Uint8Array(out.buffer, out.byteOffset, out.length * 2));
    },
  };
}

/** A safetensors file in memory as a TensorSource. */
export function safetensorsSource(bytes: Uint8Array, fileName: string): TensorSource {
  return safetensorsFilesSource([memoryFile(fileName, bytes)]);
}

/** Parses model.safetensors.index.json: its weight_map, and the shard files in the order listed. */
export function parseShardIndex(bytes: Uint8Array): { weightMap: Map<string, string>; files: string[] } {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw badCheckpoint(`${INDEX} is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof json !== 'object' || json === null || Array.isArray(json) ||
      typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw badCheckpoint(`${INDEX} has no "weight_map" object`);
  }
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string') throw badCheckpoint(`${INDEX}: weight_map entry "${name}" is not a file name`);
    // Shards sit beside the index: a plain name, never a path out of the folder.
    if (!/^[^/\\]+$/.test(file) || file === '.' || file === '..') {
      throw badCheckpoint(`${INDEX}: weight_map entry "${name}" names ${JSON.stringify(file)}, which is not a file in the folder`);
    }
    weightMap.set(name, file);
  }
  return { weightMap, files: [...new Set(weightMap.values())] };
}

// ---------------------------------------------------------------------------------------------
// Folders: on disk, over HTTP, or as a file map
// ---------------------------------------------------------------------------------------------

interface Folder {
  name: string;
  /** The whole file, or undefined when the folder has no such file. */
  readAll(file: string): Promise<Uint8Array | undefined>;
  /** The file for range reads, or undefined when the folder has no such file. */
  open(file: string): Promise<ByteFile | undefined>;
  /** The file names in the folder, where they can be listed (not over HTTP). */
  list?(): Promise<string[]>;
}

function mapFolder(source: FileMap): Folder {
  const entries = source instanceof Map ? [...source] : Object.entries(source);
  const files = new Map<string, Uint8Array>();
  for (const [name, value] of entries) {
    const bytes: unknown = value;
    if (typeof name !== 'string') throw badSource('a file map\'s keys are file names (strings)');
    if (bytes instanceof Uint8Array) files.set(name, bytes);
    else if (bytes instanceof ArrayBuffer) files.set(name, new Uint8Array(bytes));
    else throw badSource(`file map entry "${name}" is not a Uint8Array`);
  }
  return {
    name: 'the file map',
    list: async () => [...files.keys()],
    readAll: async (file) => files.get(file),
    open: async (file) => {
      const bytes = files.get(file);
      return bytes && memoryFile(file, bytes);
    },
  };
}

type NodeFs = typeof import('node:fs');
const isNotFound = (e: unknown) => ['ENOENT', 'ENOTDIR'].includes((e as { code?: string })?.code ?? '');

async function diskFolder(dir: string | URL): Promise<Folder> {
  let fs: NodeFs;
  try {
    fs = await import('node:fs');
  } catch {
    throw badSource(`cannot read the folder ${String(dir)}: this runtime has no node:fs (use a URL or a file map)`);
  }
  const shown = dir instanceof URL ? decodeURIComponent(dir.pathname) : dir;
  const base = dir instanceof URL ? new URL(dir.href.endsWith('/') ? dir.href : `${dir.href}/`) : null;
  const pathOf = (file: string): string | URL => (base ? new URL(file, base) : `${String(dir).replace(/[/\\]+$/, '')}/${file}`);
  try {
    if (!(await fs.promises.stat(dir)).isDirectory()) throw badSource(`${shown} is not a folder`);
  } catch (e) {
    if (e instanceof MlaError) throw e;
    throw badSource(isNotFound(e) ? `the folder ${shown} does not exist` : `cannot read the folder ${shown}: ${(e as Error).message}`);
  }
  return {
    name: shown,
    async list() {
      try {
        return await fs.promises.readdir(dir);
      } catch (e) {
        throw badSource(`cannot list the folder ${shown}: ${(e as Error).message}`);
      }
    },
    async readAll(file) {
      try {
        return new Uint8Array(await fs.promises.readFile(pathOf(file)));
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw badSource(`cannot read ${file} in ${shown}: ${(e as Error).message}`);
      }
    },
    async open(file) {
      const path = pathOf(file);
      let size: number;
      try {
        const st = await fs.promises.stat(path);
        if (!st.isFile()) throw badSource(`${file} in ${shown} is not a file`);
        size = st.size;
      } catch (e) {
        if (e instanceof MlaError) throw e;
        if (isNotFound(e)) return undefined;
        throw badSource(`cannot read ${file} in ${shown}: ${(e as Error).message}`);
      }
      return diskFile(fs, path, file, size);
    },
  };
}

/**
 * A file on disk read by ranges with synchronous reads (the TensorSource interface is synchronous),
 * opening it for each range: nothing stays open when loading stops halfway.
 */
function diskFile(fs: NodeFs, path: string | URL, name: string, size: number): ByteFile {
  const file: ByteFile = {
    name,
    size,
    read(position, into) {
      checkRange(file, position, into.length);
      let fd: number;
      try { fd = fs.openSync(path, 'r'); } catch (e) { throw badSource(`cannot open ${name}: ${(e as Error).message}`); }
      try {
        for (let done = 0; done < into.length;) {
          // Reads are capped at 1 GiB: a single read(2) returns at most about 2 GiB on Linux.
          const got = fs.readSync(fd, into, done, Math.min(into.length - done, 2 ** 30), position + done);
          if (got === 0) throw badCheckpoint(`${name} ends before byte ${position + done}: it was ${size} bytes when opened (changed while loading?)`);
          done += got;
        }
      } catch (e) {
        if (e instanceof MlaError) throw e;
        throw badSource(`cannot read ${name}: ${(e as Error).message}`);
      } finally {
        fs.closeSync(fd);
      }
    },
  };
  return file;
}

/** One GGUF file on disk, read by ranges. */
async function openGgufPath(path: string | URL): Promise<LoadedSource> {
  let fs: NodeFs;
  try {
    fs = await import('node:fs');
  } catch {
    throw badSource(`cannot read ${String(path)}: this runtime has no node:fs (use a URL or a file map)`);
  }
  const shown = path instanceof URL ? decodeURIComponent(path.pathname) : path;
  let size: number;
  try {
    const st = await fs.promises.stat(path);
    if (!st.isFile()) throw badSource(`${shown} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof MlaError) throw e;
    throw badSource(isNotFound(e) ? `the file ${shown} does not exist` : `cannot read ${shown}: ${(e as Error).message}`);
  }
  return ggufSource(diskFile(fs, path, shown.split(/[/\\]/).pop()!, size), shown);
}

function httpFolder(base: URL): Folder {
  const folderUrl = new URL(base.href.endsWith('/') ? base.href : `${base.href}/`);
  const readAll = async (file: string): Promise<Uint8Array | undefined> => {
    const url = new URL(file, folderUrl);
    let res: Response;
    try { res = await fetch(url); } catch (e) {
      throw badSource(`cannot fetch ${url}: ${(e as Error).message}`);
    }
    if (res.status === 404) return undefined;
    if (!res.ok) throw badSource(`cannot fetch ${url}: HTTP ${res.status}`);
    try {
      return new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw badSource(`cannot fetch ${url}: ${(e as Error).message}`);
    }
  };
  return {
    name: folderUrl.href,
    readAll,
    open: async (file) => {
      const bytes = await readAll(file);
      return bytes && memoryFile(file, bytes);
    },
  };
}

/** A hub repository as a folder: only the files the loader asks for are downloaded (or read from the cache). */
async function hubFolder(repo: HubRepo): Promise<Folder> {
  const fs = await import('node:fs').catch(() => undefined);
  const open = async (file: string): Promise<ByteFile | undefined> => {
    const got = await repo.get(file);
    if (!got) return undefined;
    return 'bytes' in got ? memoryFile(file, got.bytes) : diskFile(fs!, got.path, file, got.size);
  };
  return {
    name: repo.name,
    list: () => repo.list(),
    open,
    async readAll(file) {
      const got = await repo.get(file);
      if (!got) return undefined;
      return 'bytes' in got ? got.bytes : new Uint8Array(await fs!.promises.readFile(got.path));
    },
  };
}

/** Does `path` exist on this machine? False where there is no node:fs. */
async function existsLocally(path: string): Promise<boolean> {
  try {
    const fs = await import('node:fs');
    await fs.promises.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * 'org/name' (a safetensors folder, or the one GGUF file it holds), 'org/name:TAG' or
 * 'org/name' with options.file (one GGUF file), from the hub.
 */
async function openHub(id: string, hub: HubOptions): Promise<LoadedSource> {
  const parsed = parseHubId(id)!;
  const repo = await openHubRepo(parsed, hub);
  const folder = await hubFolder(repo);
  const gguf = await repo.gguf();
  if (gguf === undefined) return openFolder(folder);
  const file = await folder.open(gguf);
  if (!file) throw badSource(`${repo.name} has no file ${gguf}`);
  return ggufSource(file, `${parsed.repo}/${gguf}`);
}

export function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new MlaError('BAD_CONFIG', `${what} is not valid JSON: ${(e as Error).message}`);
  }
}

async function openWeights(folder: Folder): Promise<TensorSource> {
  const single = await folder.open(WEIGHTS);
  if (single) return safetensorsFilesSource([single]);
  const indexBytes = await folder.readAll(INDEX);
  if (!indexBytes) throw badSource(`${folder.name} has neither ${WEIGHTS} nor ${INDEX}`);
  const { weightMap, files } = parseShardIndex(indexBytes);
  const shards: ByteFile[] = [];
  for (const name of files) {
    const shard = await folder.open(name);
    if (!shard) throw badCheckpoint(`${INDEX} lists ${name}, which is not in ${folder.name}`);
    shards.push(shard);
  }
  return safetensorsFilesSource(shards, weightMap);
}

function hasChatTemplate(tokenizerConfig: Uint8Array | undefined): boolean {
  if (!tokenizerConfig) return false;
  try {
    return typeof JSON.parse(new TextDecoder().decode(tokenizerConfig))?.chat_template === 'string';
  } catch {
    return false; // reported when the tokenizer files are read
  }
}

/** A GGUF file as a source: config and tokenizer from its metadata. */
function ggufSource(file: ByteFile, name: string): LoadedSource {
  const g = openGguf(file);
  return { config: g.config, tensors: g.tensors, name, extras: {}, tokenizerFiles: g.tokenizerFiles };
}

const isGgufName = (name: string) => /\.gguf$/i.test(name);

async function openFolder(folder: Folder): Promise<LoadedSource> {
  const configBytes = await folder.readAll('config.json');
  if (!configBytes) {
    // A folder without config.json may hold one GGUF file, which carries its own config.
    const ggufs = (await folder.list?.() ?? []).filter(isGgufName).sort();
    if (ggufs.length > 1) throw badSource(`${folder.name} holds ${ggufs.length} GGUF files (${list(ggufs)}): name the one to load`);
    if (ggufs.length === 1) {
      const file = await folder.open(ggufs[0]);
      if (file) return ggufSource(file, `${folder.name}/${ggufs[0]}`);
    }
    throw badSource(`${folder.name} has no config.json${folder.list ? ' and no .gguf file' : ''}`);
  }
  const config = parseJson(configBytes, 'config.json');
  const tensors = splitFused(config, await openWeights(folder));
  const extras: LoadedSource['extras'] = {};
  for (const file of EXTRA_FILES) {
    // Newer exports keep the chat template in its own file; look for it only when
    // tokenizer_config.json has none (a request for a file that is not there shows as an error
    // in a browser's console).
    if (file === 'chat_template.jinja' && hasChatTemplate(extras['tokenizer_config.json'])) continue;
    const bytes = await folder.readAll(file);
    if (bytes) extras[file] = bytes;
  }
  return { config, tensors, name: folder.name, extras };
}

// ---------------------------------------------------------------------------------------------
// In-memory { config, tensors }
// ---------------------------------------------------------------------------------------------

function isInMemory(s: object): s is InMemoryModel {
  if (s instanceof Map || !('config' in s) || !('tensors' in s)) return false;
  const t = (s as { tensors: unknown }).tensors;
  return !(t instanceof Uint8Array || t instanceof ArrayBuffer);
}

function inMemorySource(tensors: Record<string, InMemoryTensor>): TensorSource {
  if (typeof tensors !== 'object' || tensors === null) throw badSource('`tensors` must be an object of { shape, data }');
  for (const [name, t] of Object.entries(tensors)) {
    const ok = t && Array.isArray(t.shape) && t.shape.every((n) => Number.isInteger(n) && n >= 0) && t.data instanceof Float32Array;
    if (!ok) throw badSource(`tensor ${name} must be { shape: number[], data: Float32Array }`);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new MlaError('BAD_SHAPE', `tensor ${name} has ${t.data.length} values but shape [${t.shape}] needs ${n}`);
  }
  const source = (map: Record<string, InMemoryTensor>): TensorSource => ({
    names: () => Object.keys(map),
    shape: (name) => map[name]?.shape,
    read: (name, out) => out.set(map[name].data),
    rowsOf: (name, row0, rows) => {
      const [, cols] = map[name].shape;
      return source({ [name]: { shape: [rows, cols], data: map[name].data.subarray(row0 * cols, (row0 + rows) * cols) } });
    },
  });
  return source(tensors);
}

// ---------------------------------------------------------------------------------------------

/**
 * Opens a source: reads config.json, the extra files and every safetensors header (checking them
 * all), but no tensor data. Without a source, the built-in default model.
 */
export async function openSource(source: ModelSource | undefined, hub: HubOptions = {}): Promise<LoadedSource> {
  if (source === undefined) source = defaultModelUrl();
  // 'org/name' is a hub name unless a file or folder of that path exists here (a local path wins).
  // hubUrl, cacheDir and onDownload are settings a local load ignores; file and revision would
  // change what is loaded, so they are refused there.
  const hubOnly = (['file', 'revision'] as const).find((k) => hub[k] !== undefined);
  if (typeof source === 'string' && parseHubId(source) && !(await existsLocally(source))) {
    try {
      return await openHub(source, hub);
    } catch (e) {
      // It may have been meant as a path: say that none exists, not only what the hub said.
      if (e instanceof MlaError && e.code === 'FETCH_FAILED') throw new MlaError(e.code, `no file or folder ${source} here, and as a hub name: ${e.message}`);
      throw e;
    }
  }
  if (hubOnly) throw new MlaError('BAD_INPUT', `the ${hubOnly} option is for a hub name ('org/name'), not ${typeof source === 'string' ? `the local path ${source}` : 'this source'}`);
  if (typeof source === 'string') {
    // "scheme://…" is a URL; anything else (including C:\…) is a path on this machine.
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
      try { source = new URL(source); } catch { throw badSource(`${source} is not a valid URL`); }
    } else {
      if (source === '') throw badSource('a model folder path is empty');
      if (isGgufName(source)) return openGgufPath(source);
      return openFolder(await diskFolder(source));
    }
  }
  if (source instanceof URL) {
    const gguf = isGgufName(source.pathname);
    if (source.protocol === 'file:') return gguf ? openGgufPath(source) : openFolder(await diskFolder(source));
    if (source.protocol === 'http:' || source.protocol === 'https:') {
      if (!gguf) return openFolder(httpFolder(source));
      const name = decodeURIComponent(source.pathname.split('/').pop()!);
      const bytes = await httpFolder(new URL('.', source)).readAll(name);
      if (!bytes) throw badSource(`cannot fetch ${source}: HTTP 404`);
      return ggufSource(memoryFile(name, bytes), source.href);
    }
    throw badSource(`cannot read a model from a ${source.protocol} URL (use file:, http: or https:)`);
  }
  if (typeof source !== 'object' || source === null || Array.isArray(source)) {
    throw badSource('a model source is a folder path, a URL, a map of file names to bytes, or { config, tensors }');
  }
  if (isInMemory(source)) {
    return { config: source.config, tensors: splitFused(source.config, inMemorySource(source.tensors)), name: 'in-memory model', extras: {} };
  }
  return openFolder(mapFolder(source as FileMap));
}
