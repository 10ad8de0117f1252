// Models by hub name, against a local server on 127.0.0.1 with the hub's URL layout
// (/{org}/{name}/resolve/{revision}/{file} and /api/models/{org}/{name}/tree/{revision}): a
// safetensors folder, a sharded one, GGUF files by tag and by name, the cache (a second load makes
// no request), a 404, a 500, a connection cut mid-file and the retry after it, and which of a local
// path and a hub name wins.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, MlaError, quantize, type LoadOptions } from '../src/index.js';
import { parseHubId } from '../src/formats/hub.js';
import { makeRandomCheckpoint, tinyMlaConfig } from './reference/model.js';
import { writeShardedSafetensors } from './reference/safetensors-writer.js';

const FORTUNE = new URL('../models/fortune-mla/', import.meta.url);
const fortuneFiles = Object.fromEntries(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json',
  'generation_config.json', 'README.md'].map((f) => [f, new Uint8Array(readFileSync(new URL(f, FORTUNE)))]));
const tinyConfig = tinyMlaConfig();
const tiny = makeRandomCheckpoint(tinyConfig, 7);
const shardedFiles = { 'config.json': new TextEncoder().encode(JSON.stringify(tinyConfig)), ...writeShardedSafetensors(tiny, 2) };

const repos = new Map<string, Record<string, Uint8Array>>();
const requests: string[] = [];
/** Paths answered with a 500, and paths cut mid-file (once each). */
const fail500 = new Set<string>();
const cutOnce = new Set<string>();
let server: http.Server;
let hubUrl = '';
let cacheDir = '';

beforeAll(async () => {
  const q8 = await quantize(FORTUNE, { type: 'q8_0' });
  const q4 = await quantize(FORTUNE, { type: 'q4_0' });
  repos.set('org/fortune', fortuneFiles);
  repos.set('org/sharded', shardedFiles);
  repos.set('org/fortune-GGUF', { 'fortune.Q8_0.gguf': q8, 'fortune.Q4_0.gguf': q4, 'README.md': new Uint8Array(3) });
  repos.set('org/one-gguf', { 'fortune-q8_0.gguf': q8 });
  repos.set('org/flaky', { ...fortuneFiles });
  server = http.createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
    requests.push(path);
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/.exec(path);
    if (m) {
      const repo = repos.get(m[1]);
      if (!repo || m[2] !== 'main') { res.writeHead(404).end('{"error":"not found"}'); return; }
      const list = Object.entries(repo).map(([p, b]) => ({ type: 'file', path: p, size: b.length, oid: 'x' }));
      list.push({ type: 'directory', path: 'onnx', size: 0, oid: 'y' });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(list));
      return;
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    const bytes = m && m[2] === 'main' ? repos.get(m[1])?.[m[3]] : undefined;
    if (!bytes) { res.writeHead(404).end('Entry not found'); return; }
    if (fail500.has(path)) { res.writeHead(500).end('Internal Error'); return; }
    res.writeHead(200, { 'content-length': bytes.length, 'content-type': 'application/octet-stream' });
    if (cutOnce.delete(path)) {
      // Half the body, then the connection is dropped.
      res.write(bytes.subarray(0, bytes.length >> 1), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(bytes);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  hubUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  cacheDir = mkdtempSync(join(tmpdir(), 'mla-hub-'));
});

afterAll(async () => {
  await new Promise((ok) => server.close(ok));
  rmSync(cacheDir, { recursive: true, force: true });
});

const opts = (more: LoadOptions = {}): LoadOptions => ({ hubUrl, cacheDir, threads: 1, ...more });

async function logitsOf(source: Parameters<typeof loadModel>[0], options: LoadOptions): Promise<Float32Array> {
  const model = await loadModel(source, options);
  try {
    return model.forward([1, 5, 9, 2]);
  } finally {
    model.dispose();
  }
}

/** Everything under the cache folder, as relative paths. */
const cached = () => readdirSync(cacheDir, { recursive: true }).map(String).sort();

async function failure(p: Promise<unknown>): Promise<MlaError> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(MlaError);
  return e as MlaError;
}

describe('hub names', () => {
  it('parses org/name and org/name:TAG, and nothing else', () => {
    expect(parseHubId('org/name')).toEqual({ repo: 'org/name' });
    expect(parseHubId('deepseek-ai/DeepSeek-V2-Lite:Q4_K_M')).toEqual({ repo: 'deepseek-ai/DeepSeek-V2-Lite', tag: 'Q4_K_M' });
    for (const s of ['./a/b', '/a/b', 'a/b/c', 'a', '../b', 'a/..', 'https://x/y', 'C:\\x\\y', 'a/b:', '.a/b']) expect(parseHubId(s)).toBeNull();
  });
});

describe('loading from a hub', () => {
  it('a safetensors folder: the same logits as from disk, with progress; the second load makes no request', async () => {
    const local = await logitsOf(FORTUNE, { threads: 1 });
    const seen: string[] = [];
    let last = [0, 0];
    requests.length = 0;
    const first = await logitsOf('org/fortune', opts({ onDownload: (file, done, total) => { seen.push(file); last = [done, total]; } }));
    expect(first).toEqual(local);
    expect(requests[0]).toBe('/api/models/org/fortune/tree/main');
    expect(requests).toContain('/org/fortune/resolve/main/model.safetensors');
    expect(requests).not.toContain('/org/fortune/resolve/main/README.md'); // only what the loader reads
    expect(new Set(seen)).toContain('model.safetensors');
    expect(last[0]).toBe(last[1]);
    expect(readFileSync(join(cacheDir, 'org/fortune/main/model.safetensors'))).toEqual(Buffer.from(fortuneFiles['model.safetensors']));
    const model = await loadModel('org/fortune', opts());
    expect(model.tokenizer?.encode('hello').length).toBeGreaterThan(0);
    model.dispose();
    requests.length = 0;
    expect(await logitsOf('org/fortune', opts())).toEqual(local);
    expect(requests).toEqual([]);
  });

  it('a sharded folder, through its index', async () => {
    const local = await logitsOf(shardedFiles, { threads: 1 });
    expect(await logitsOf('org/sharded', opts())).toEqual(local);
    expect(cached().filter((f) => f.startsWith('org/sharded/main/')).length).toBe(4); // config, index, two shards
  });

  it('one GGUF by tag or by file name, the same as the file read locally; cached', async () => {
    const q4 = repos.get('org/fortune-GGUF')!['fortune.Q4_0.gguf'];
    const local = await logitsOf({ 'fortune.Q4_0.gguf': q4 }, { threads: 1 });
    requests.length = 0;
    expect(await logitsOf('org/fortune-GGUF:Q4_0', opts())).toEqual(local);
    expect(requests).toEqual(['/api/models/org/fortune-GGUF/tree/main', '/org/fortune-GGUF/resolve/main/fortune.Q4_0.gguf']);
    requests.length = 0;
    expect(await logitsOf('org/fortune-GGUF:q4_0', opts())).toEqual(local);
    expect(await logitsOf('org/fortune-GGUF', opts({ file: 'fortune.Q4_0.gguf' }))).toEqual(local);
    expect(requests).toEqual([]);
    // A repository holding one GGUF file and no config.json loads it by name alone.
    const q8 = await logitsOf('org/fortune-GGUF', opts({ file: 'fortune.Q8_0.gguf' }));
    expect(await logitsOf('org/one-gguf', opts())).toEqual(q8);
  });

  it('refuses a tag that names no file or several, and a file option that is not a GGUF', async () => {
    let e = await failure(loadModel('org/fortune-GGUF:Q6_K', opts()));
    expect(e.code).toBe('BAD_SOURCE');
    expect(e.message).toMatch(/no GGUF file tagged Q6_K.*fortune\.Q4_0\.gguf/);
    e = await failure(loadModel('org/fortune-GGUF', opts()));
    expect(e.message).toMatch(/2 GGUF files/);
    e = await failure(loadModel('org/fortune-GGUF', opts({ file: '../x.gguf' })));
    expect(e.code).toBe('BAD_INPUT');
    e = await failure(loadModel('org/fortune-GGUF', opts({ file: 'model.safetensors' })));
    expect(e.code).toBe('BAD_INPUT');
    e = await failure(loadModel(FORTUNE, { file: 'x.gguf' }));
    expect(e.code).toBe('BAD_INPUT');
  });

  it('a 404 is FETCH_FAILED naming the URL and the status', async () => {
    let e = await failure(loadModel('org/nothing', opts()));
    expect(e.code).toBe('FETCH_FAILED');
    expect(e.message).toContain(`${hubUrl}/api/models/org/nothing/tree/main`);
    expect(e.message).toContain('HTTP 404');
    // It may have been a mistyped path: the message says no such path exists here too.
    expect(e.message).toMatch(/^no file or folder org\/nothing here, and as a hub name: cannot fetch/);
    e = await failure(loadModel('org/fortune-GGUF', opts({ file: 'absent.gguf' })));
    expect(e.code).toBe('FETCH_FAILED');
    expect(e.message).toContain(`${hubUrl}/org/fortune-GGUF/resolve/main/absent.gguf: HTTP 404`);
    e = await failure(loadModel('org/fortune', opts({ revision: 'v2' })));
    expect(e.message).toContain('/tree/v2: HTTP 404');
  });

  it('a 500, then a connection cut mid-file, leave nothing cached; the retry loads the whole file', async () => {
    const file = '/org/flaky/resolve/main/model.safetensors';
    fail500.add(file);
    let e = await failure(loadModel('org/flaky', opts()));
    fail500.delete(file);
    expect(e.code).toBe('FETCH_FAILED');
    expect(e.message).toContain(`${hubUrl}${file}: HTTP 500`);
    expect(cached().filter((f) => f.includes('flaky/main/model'))).toEqual([]);

    cutOnce.add(file);
    e = await failure(loadModel('org/flaky', opts()));
    expect(e.code).toBe('FETCH_FAILED');
    expect(e.message).toContain(`${hubUrl}${file}`);
    expect(e.message).toMatch(/after \d+ of 6367608 bytes/);
    expect(cached().filter((f) => f.includes('flaky/main/model'))).toEqual([]);

    requests.length = 0;
    expect(await logitsOf('org/flaky', opts())).toEqual(await logitsOf(FORTUNE, { threads: 1 }));
    expect(requests).toContain(file);
    expect(readFileSync(join(cacheDir, 'org/flaky/main/model.safetensors')).length).toBe(6367608);
  });

  it('a local folder of the same path wins over the hub', async () => {
    requests.length = 0;
    // models/fortune-mla, relative to the working folder (the repository), looks like a hub name.
    expect(existsSync('models/fortune-mla')).toBe(true);
    expect(await logitsOf('models/fortune-mla', opts())).toEqual(await logitsOf(FORTUNE, { threads: 1 }));
    expect(requests).toEqual([]);
    const e = await failure(loadModel('models/fortune-mla', opts({ revision: 'v1' })));
    expect(e.code).toBe('BAD_INPUT');
  });

  it('takes the hub and the cache folder from MLA_WASM_HUB_URL and MLA_WASM_CACHE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mla-hub-env-'));
    process.env.MLA_WASM_HUB_URL = hubUrl;
    process.env.MLA_WASM_CACHE = dir;
    try {
      await logitsOf('org/one-gguf', { threads: 1 });
      expect(readdirSync(join(dir, 'org/one-gguf/main'))).toEqual(['fortune-q8_0.gguf']);
    } finally {
      delete process.env.MLA_WASM_HUB_URL;
      delete process.env.MLA_WASM_CACHE;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
