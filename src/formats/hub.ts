// Models by their hub name ('org/name', 'org/name:Q4_0'), fetched from a Hugging Face-style hub:
// files from {hubUrl}/{org}/{name}/resolve/{revision}/{file}, the file list from
// {hubUrl}/api/models/{org}/{name}/tree/{revision}. Everything fetched is kept in a cache (a folder
// where node:fs exists, else the Cache API), so a second load reads no network. A download is
// written under a temporary name and renamed only once all its bytes arrived, so a cut download
// never counts as cached.
import { MlaError } from '../errors.js';

export interface HubOptions {
  /** One GGUF file of the repository to load (instead of its safetensors folder). */
  file?: string;
  /** Branch, tag or commit (default 'main'). */
  revision?: string;
  /** The hub's base URL (default: $MLA_WASM_HUB_URL, $HF_ENDPOINT, else https://huggingface.co). */
  hubUrl?: string;
  /** Where downloads are kept in Node, Deno and Bun (default: $MLA_WASM_CACHE, else ~/.cache/mla-wasm/hub). */
  cacheDir?: string;
  /** Called as a file downloads: bytes received so far, and its size (0 when unknown). */
  onDownload?: (file: string, done: number, total: number) => void;
}

export const HUB_OPTIONS = ['file', 'revision', 'hubUrl', 'cacheDir', 'onDownload'] as const;

export interface HubId { repo: string; tag?: string }

const SEGMENT = '[A-Za-z0-9][A-Za-z0-9._-]*';
const HUB_ID = new RegExp(`^(${SEGMENT}/${SEGMENT})(?::([A-Za-z0-9._-]+))?$`);

/** 'org/name' or 'org/name:TAG' → its parts; anything else (paths with more slashes, '.', URLs) → null. */
export function parseHubId(s: string): HubId | null {
  const m = HUB_ID.exec(s);
  if (!m || m[1].split('/').some((p) => p === '.' || p === '..')) return null;
  return m[2] === undefined ? { repo: m[1] } : { repo: m[1], tag: m[2] };
}

/** A file of the repository, as the loader reads it: a path on disk, or its bytes. */
export type HubFile = { path: string; size: number } | { bytes: Uint8Array };

export interface HubRepo {
  /** For messages: 'org/name@revision (hubUrl)'. */
  name: string;
  /** The top-level file names of the repository at its revision. */
  list(): Promise<string[]>;
  /** A file, downloaded into the cache unless it is there; undefined when the repository has no such file. */
  get(file: string): Promise<HubFile | undefined>;
  /** The GGUF file to load when one was asked for (options.file or a ':TAG'), else undefined. */
  gguf(): Promise<string | undefined>;
}

const env = (name: string): string | undefined => {
  try {
    const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];
    return v ? v : undefined;
  } catch {
    return undefined; // Deno without --allow-env
  }
};

const fetchFailed = (url: string, why: string) => new MlaError('FETCH_FAILED', `cannot fetch ${url}: ${why}`);

/** A file name of the repository that is safe to use as a path under the cache folder. */
function checkFileName(file: string, what: string): void {
  const parts = file.split('/');
  if (!file || file.includes('\\') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new MlaError('BAD_INPUT', `${what} ${JSON.stringify(file)} is not a file name in a repository`);
  }
}

const encodePath = (file: string) => file.split('/').map(encodeURIComponent).join('/');

interface TreeEntry { type: string; path: string; size?: number; lfs?: { size?: number } }

export async function openHubRepo(id: HubId, options: HubOptions): Promise<HubRepo> {
  const revision = options.revision ?? 'main';
  if (typeof revision !== 'string' || revision === '') throw new MlaError('BAD_INPUT', 'revision must be a non-empty string');
  if (options.file !== undefined) {
    if (typeof options.file !== 'string') throw new MlaError('BAD_INPUT', 'file must be a string');
    checkFileName(options.file, 'file');
    if (!/\.gguf$/i.test(options.file)) throw new MlaError('BAD_INPUT', `file ${JSON.stringify(options.file)} is not a .gguf file`);
    if (id.tag !== undefined) throw new MlaError('BAD_INPUT', `give either ${id.repo}:${id.tag} or the file option, not both`);
  }
  if (options.onDownload !== undefined && typeof options.onDownload !== 'function') {
    throw new MlaError('BAD_INPUT', 'onDownload must be a function');
  }
  const hubUrl = (options.hubUrl ?? env('MLA_WASM_HUB_URL') ?? env('HF_ENDPOINT') ?? 'https://huggingface.co').replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]/.test(hubUrl)) throw new MlaError('BAD_INPUT', `hubUrl ${JSON.stringify(hubUrl)} is not an http(s) URL`);
  const store = await openStore(options.cacheDir, id.repo, revision);
  const rev = encodeURIComponent(revision);
  const fileUrl = (file: string) => `${hubUrl}/${id.repo}/resolve/${rev}/${encodePath(file)}`;
  const treeUrl = `${hubUrl}/api/models/${id.repo}/tree/${rev}`;

  let sizes: Map<string, number> | undefined;
  const listing = async (): Promise<Map<string, number>> => {
    if (sizes) return sizes;
    const bytes = await store.get('tree', treeUrl);
    let entries: unknown;
    try { entries = JSON.parse(new TextDecoder().decode(bytes)); } catch { entries = null; }
    if (!Array.isArray(entries)) throw fetchFailed(treeUrl, 'the file list is not a JSON array');
    sizes = new Map();
    for (const e of entries as TreeEntry[]) {
      if (e?.type !== 'file' || typeof e.path !== 'string' || e.path.includes('/')) continue;
      const size = e.lfs?.size ?? e.size;
      sizes.set(e.path, typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? size : -1);
    }
    return sizes;
  };

  const get = async (file: string, expected: number | undefined): Promise<HubFile> => {
    const url = fileUrl(file);
    return store.getFile(file, url, expected, options.onDownload);
  };

  return {
    name: `${id.repo}@${revision} (${hubUrl})`,
    list: async () => [...(await listing()).keys()],
    async get(file) {
      // A file named in the options is fetched without the file list.
      if (options.file !== undefined && file === options.file) return get(file, undefined);
      const size = (await listing()).get(file);
      if (size === undefined) return undefined;
      return get(file, size < 0 ? undefined : size);
    },
    async gguf() {
      if (options.file !== undefined) return options.file;
      if (id.tag === undefined) return undefined;
      const tag = id.tag.replace(/[.]/g, '\\.');
      const re = new RegExp(`(^|[.-])${tag}\\.gguf$`, 'i');
      const ggufs = [...(await listing()).keys()].filter((f) => /\.gguf$/i.test(f));
      const found = ggufs.filter((f) => re.test(f));
      if (found.length === 1) return found[0];
      throw new MlaError('BAD_SOURCE', found.length
        ? `${id.repo}@${revision} has ${found.length} GGUF files tagged ${id.tag}: ${found.join(', ')}; name one with the file option`
        : `${id.repo}@${revision} has no GGUF file tagged ${id.tag}` + (ggufs.length ? ` (it has ${ggufs.join(', ')})` : ' (it has no GGUF file)'));
    },
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.length; }
  return out;
}

/**
 * Streams `url` into `sink`, checking that exactly `expected` bytes arrive (the file list's size,
 * else the Content-Length of an uncompressed response). Throws FETCH_FAILED naming the URL and the
 * HTTP status, or how many bytes arrived before the connection broke.
 */
async function download(url: string, expected: number | undefined, onBytes: ((done: number, total: number) => void) | undefined,
  sink: (chunk: Uint8Array) => void | Promise<void>): Promise<number> {
  let res: Response;
  try { res = await fetch(url); } catch (e) {
    throw fetchFailed(url, (e as Error).message + ((e as { cause?: Error }).cause ? ` (${(e as { cause: Error }).cause.message})` : ''));
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw fetchFailed(url, `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
  }
  const header = res.headers.get('content-length');
  const length = header !== null && !res.headers.get('content-encoding') ? Number(header) : undefined;
  if (expected !== undefined && length !== undefined && length !== expected) {
    await res.body?.cancel().catch(() => {});
    throw fetchFailed(url, `the hub lists ${expected} bytes but the response has ${length}`);
  }
  const total = expected ?? length;
  let done = 0;
  if (res.body) {
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        done += value.length;
        if (total !== undefined && done > total) throw fetchFailed(url, `more than the ${total} bytes expected`);
        await sink(value);
        onBytes?.(done, total ?? 0);
      }
    } catch (e) {
      await reader.cancel().catch(() => {});
      if (e instanceof MlaError) throw e;
      throw fetchFailed(url, `the connection broke after ${done}${total !== undefined ? ` of ${total}` : ''} bytes: ${(e as Error).message}`);
    }
  }
  if (total !== undefined && done !== total) throw fetchFailed(url, `the response ended after ${done} of ${total} bytes`);
  return done;
}

// ---------------------------------------------------------------------------------------------
// Where downloads are kept
// ---------------------------------------------------------------------------------------------

interface Store {
  /** A small file (the file list), from the store or else fetched and stored. */
  get(key: string, url: string): Promise<Uint8Array>;
  /** A repository file, from the store or else downloaded into it. */
  getFile(file: string, url: string, expected: number | undefined, onDownload: HubOptions['onDownload']): Promise<HubFile>;
}

type NodeFs = typeof import('node:fs');

/**
 * The folder where downloads are kept when node:fs exists: options.cacheDir, $MLA_WASM_CACHE,
 * else $XDG_CACHE_HOME/mla-wasm/hub or ~/.cache/mla-wasm/hub. Undefined without node:fs.
 */
export async function defaultCacheDir(): Promise<string | undefined> {
  const fromEnv = env('MLA_WASM_CACHE');
  if (fromEnv) return fromEnv;
  try {
    const os = await import('node:os');
    return `${env('XDG_CACHE_HOME') ?? `${os.homedir()}/.cache`}/mla-wasm/hub`;
  } catch {
    return undefined;
  }
}

async function openStore(cacheDir: string | undefined, repo: string, revision: string): Promise<Store> {
  if (cacheDir !== undefined && (typeof cacheDir !== 'string' || cacheDir === '')) {
    throw new MlaError('BAD_INPUT', 'cacheDir must be a non-empty string');
  }
  let fs: NodeFs | undefined;
  try { fs = await import('node:fs'); } catch { fs = undefined; }
  if (fs) {
    const root = cacheDir ?? await defaultCacheDir();
    if (root) return diskStore(fs, `${root.replace(/[/\\]+$/, '')}/${repo}/${encodeURIComponent(revision)}`);
  }
  if (cacheDir !== undefined) throw new MlaError('BAD_INPUT', 'cacheDir needs node:fs, which this runtime has not');
  const caches = (globalThis as { caches?: CacheStorage }).caches;
  return caches ? cacheApiStore(caches) : noStore();
}

/**
 * {dir}/{file} holds each file as the repository has it (so the folder is itself a model folder),
 * and {dir}.tree.json the file list. A download goes to {dir}/{file}.{random}.part first.
 */
function diskStore(fs: NodeFs, dir: string): Store {
  const fsp = fs.promises;
  const sizeOf = async (path: string) => {
    try { const st = await fsp.stat(path); return st.isFile() ? st.size : undefined; } catch { return undefined; }
  };
  const fetchInto = async (path: string, url: string, expected: number | undefined,
    onBytes?: (done: number, total: number) => void): Promise<number> => {
    await fsp.mkdir(path.slice(0, path.lastIndexOf('/')), { recursive: true }).catch((e: Error) => {
      throw new MlaError('BAD_SOURCE', `cannot create the cache folder for ${path}: ${e.message}`);
    });
    const temp = `${path}.${Math.random().toString(36).slice(2)}.part`;
    const handle = await fsp.open(temp, 'w');
    try {
      const n = await download(url, expected, onBytes, async (chunk) => { await handle.write(chunk); });
      await handle.close();
      await fsp.rename(temp, path);
      return n;
    } catch (e) {
      await handle.close().catch(() => {});
      await fsp.rm(temp, { force: true }).catch(() => {});
      throw e;
    }
  };
  return {
    async get(key, url) {
      const path = `${dir}.${key}.json`;
      if ((await sizeOf(path)) === undefined) await fetchInto(path, url, undefined);
      return new Uint8Array(await fsp.readFile(path));
    },
    async getFile(file, url, expected, onDownload) {
      const path = `${dir}/${file}`;
      let size = await sizeOf(path);
      if (size === undefined || (expected !== undefined && size !== expected)) {
        size = await fetchInto(path, url, expected, onDownload && ((d, t) => onDownload(file, d, t)));
      }
      return { path, size };
    },
  };
}

/** The browser's Cache API, keyed by URL; an entry is put only once its body arrived whole. */
function cacheApiStore(caches: CacheStorage): Store {
  const cached = async (url: string, fetchIt: () => Promise<Uint8Array>) => {
    const cache = await caches.open('mla-wasm-hub');
    const hit = await cache.match(url);
    if (hit) return new Uint8Array(await hit.arrayBuffer());
    const bytes = await fetchIt();
    await cache.put(url, new Response(bytes as unknown as BodyInit)).catch(() => {}); // a full quota only costs the next load a download
    return bytes;
  };
  return {
    get: (_key, url) => cached(url, () => collect(url, undefined)),
    getFile: async (file, url, expected, onDownload) => ({
      bytes: await cached(url, () => collect(url, expected, onDownload && ((d, t) => onDownload(file, d, t)))),
    }),
  };
}

/** No cache at all (a runtime with neither node:fs nor the Cache API): every load fetches. */
function noStore(): Store {
  return {
    get: (_key, url) => collect(url, undefined),
    getFile: async (file, url, expected, onDownload) => ({
      bytes: await collect(url, expected, onDownload && ((d, t) => onDownload(file, d, t))),
    }),
  };
}

async function collect(url: string, expected: number | undefined, onBytes?: (done: number, total: number) => void): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await download(url, expected, onBytes, (c) => { chunks.push(c); });
  return concat(chunks);
}
