// Model sources: folders on disk, URLs, file maps and in-memory models; shards; F16/BF16; progress;
// the memory check; and every validation error with its code. Weights are placed into a Heap with
// placeWeights (no kernels needed) and compared byte for byte across sources.
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig, type MlaAttention } from '../src/formats/config.js';
import { MlaError } from '../src/errors.js';
import { Heap } from '../src/host/heap.js';
import { CHUNK } from '../src/model/decoder.js';
import { memoryNeed, WASM_MEMORY_LIMIT } from '../src/model/memory.js';
import { kernelsFor } from './helpers.js';

// The kernels answer how much scratch they need; the loader asks them before allocating.
const { kernels: KERNELS } = await kernelsFor('simd');
import { loadModel } from '../src/generate/model.js';
import { openSource, type ModelSource } from '../src/formats/source.js';
import { expectedTensors, PANEL_COLS, panelWidth, placeWeights, weightBlockBytes, weightBytes } from '../src/model/weights.js';
import { makeRandomCheckpoint, tensorsFromSafetensors, tinyLlamaConfig, tinyMlaConfig, type Tensors } from './reference/model.js';
import { toBF16Bits, toF16Bits, writeSafetensors, writeShardedSafetensors, type FloatDtype } from './reference/safetensors-writer.js';

const FORTUNE_URL = new URL('../models/fortune-mla/', import.meta.url);
const FORTUNE_DIR = fileURLToPath(FORTUNE_URL);
const enc = (x: unknown) => new TextEncoder().encode(typeof x === 'string' ? x : JSON.stringify(x));

/** Every file of a folder, as a file map. */
function readFolder(dir: string): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const f of readdirSync(dir)) out[f] = new Uint8Array(readFileSync(join(dir, f)));
  return out;
}

const tmpDirs: string[] = [];
function writeFolder(files: Record<string, Uint8Array>): string {
  const dir = mkdtempSync(join(tmpdir(), 'mla-source-'));
  tmpDirs.push(dir);
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  return dir;
}
afterAll(() => { for (const d of tmpDirs) rmSync(d, { recursive: true, force: true }); });

/** Open a source and place its weights in a fresh heap, as loadModel does (without kernels); returns the placed bytes. */
async function placed(source: ModelSource | undefined, onProgress?: (done: number, total: number) => void): Promise<Uint8Array> {
  const src = await openSource(source);
  const config = parseConfig(src.config);
  const heap = new Heap();
  const w = placeWeights(config, src.tensors, heap, onProgress);
  return heap.u8(w.block, weightBlockBytes(config)).slice();
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<MlaError> {
  let err: unknown;
  try { await (typeof p === 'function' ? p() : p); } catch (e) { err = e; }
  expect(err, 'expected an MlaError').toBeInstanceOf(MlaError);
  return err as MlaError;
}

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, ...mentions: string[]): Promise<void> {
  const e = await codeOf(p);
  expect(e.code, e.message).toBe(code);
  for (const m of mentions) expect(e.message).toContain(m);
}

function expectSameBytes(a: Uint8Array, b: Uint8Array, what: string): void {
  expect(a.length, `${what}: length`).toBe(b.length);
  let diff = -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) { diff = i; break; }
  expect(diff, `${what}: first differing byte`).toBe(-1);
}

/** A tiny random MLA checkpoint as a file map (single file). */
function tinyFiles(config = tinyMlaConfig(), seed = 3, dtype: FloatDtype = 'F32'): { config: any; tensors: Tensors; files: Record<string, Uint8Array> } {
  const tensors = makeRandomCheckpoint(config, seed);
  return { config, tensors, files: { 'config.json': enc(config), 'model.safetensors': writeSafetensors(tensors, { format: 'pt' }, { dtype }) } };
}

/** Rewrite a safetensors file's header (keeping its data section), optionally lying about its length. */
function rewriteHeader(file: Uint8Array, edit: (h: Record<string, any>) => void, lenDelta = 0): Uint8Array {
  const len = new DataView(file.buffer, file.byteOffset).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + len)));
  edit(header);
  const h = enc(header);
  const out = new Uint8Array(8 + h.length + file.length - 8 - len);
  new DataView(out.buffer).setUint32(0, h.length + lenDelta, true);
  out.set(h, 8);
  out.set(file.subarray(8 + len), 8 + h.length);
  return out;
}

/** Serve a file map over HTTP under /m/, with some names answering a given status instead. */
async function serve(files: Record<string, Uint8Array>, status: Record<string, number> = {}) {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url!, 'http://x').pathname.replace(/^\/m\//, ''));
    hits.push(name);
    const body = files[name];
    if (status[name] || !body) { res.writeHead(status[name] ?? 404); res.end(); return; }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/m/`;
  const close = () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  return { url, hits, close };
}

// ---------------------------------------------------------------------------------------------

describe('every kind of source places the same weights', () => {
  const files = readFolder(FORTUNE_DIR);
  const config = JSON.parse(new TextDecoder().decode(files['config.json']));
  let reference: Uint8Array;

  it('in memory { config, tensors } (the baseline)', async () => {
    reference = await placed({ config, tensors: tensorsFromSafetensors(files['model.safetensors']) });
    expect(weightBytes(parseConfig(config))).toBe(1_590_528 * 4);
    expect(reference.length).toBe(weightBlockBytes(parseConfig(config)));
  });

  it('a file map, as an object and as a Map', async () => {
    expectSameBytes(await placed(files), reference, 'object file map');
    expectSameBytes(await placed(new Map(Object.entries(files))), reference, 'Map file map');
  });

  it('a folder: absolute path, relative path, trailing slash, file: URL (object and string)', async () => {
    for (const s of [FORTUNE_DIR, relative(process.cwd(), FORTUNE_DIR), FORTUNE_DIR.replace(/\/?$/, '/'), FORTUNE_URL, FORTUNE_URL.href]) {
      expectSameBytes(await placed(s), reference, String(s));
    }
  });

  it('no source: the default model (fortune-mla), with its extra files', async () => {
    const src = await openSource(undefined);
    expect(src.name).toMatch(/fortune-mla\/?$/);
    expectSameBytes(await placed(undefined), reference, 'default model');
  });

  it('hands on tokenizer.json, tokenizer_config.json and generation_config.json as raw bytes when present', async () => {
    for (const s of [FORTUNE_DIR, files] as ModelSource[]) {
      const src = await openSource(s);
      expect(Object.keys(src.extras).sort()).toEqual(['generation_config.json', 'tokenizer.json', 'tokenizer_config.json']);
      for (const [name, bytes] of Object.entries(src.extras)) expect(Array.from(bytes!)).toEqual(Array.from(files[name]));
    }
    const { 'tokenizer.json': _t, 'generation_config.json': _g, ...fewer } = files;
    const src = await openSource(fewer);
    expect(Object.keys(src.extras)).toEqual(['tokenizer_config.json']);
    expect((await openSource({ config, tensors: {} })).extras).toEqual({});
  });

  it('three shards with an index: as a file map, on disk and over HTTP', async () => {
    const tensors = tensorsFromSafetensors(files['model.safetensors']);
    const shards = { ...writeShardedSafetensors(tensors, 3), 'config.json': files['config.json'] };
    expect(Object.keys(shards).filter((f) => f.endsWith('.safetensors')).sort())
      .toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    expectSameBytes(await placed(shards), reference, 'sharded file map');
    expectSameBytes(await placed(writeFolder(shards)), reference, 'sharded folder');
    const server = await serve(shards);
    try {
      expectSameBytes(await placed(server.url), reference, 'sharded over HTTP');
      expect(server.hits).toContain('model.safetensors'); // looked for first, 404
      expect(server.hits).toContain('model.safetensors.index.json');
    } finally { await server.close(); }
  });

  it('over HTTP: a single file (URL with or without the trailing slash), absent extras simply absent', async () => {
    const { 'tokenizer.json': _t, ...served } = files;
    const server = await serve(served);
    try {
      expectSameBytes(await placed(server.url), reference, 'HTTP');
      expectSameBytes(await placed(new URL(server.url.replace(/\/$/, ''))), reference, 'HTTP without slash');
      const src = await openSource(server.url);
      expect(src.extras['tokenizer.json']).toBeUndefined();
      expect(src.extras['tokenizer_config.json']).toBeDefined();
      expect(src.name).toBe(server.url);
    } finally { await server.close(); }
  });

  it('weight matrices start on 4 KiB boundaries, the decoder\'s scratch 2 KiB past one (matvec inputs off the weight rows\' L1 sets)', async () => {
    const model = await loadModel(files, { threads: 1 });
    // @ts-expect-error reaching into the decoder for the test only
    const { w, s } = model.decoder;
    const matrices = [w.embed, w.lmHead, ...w.layers.flatMap((l: any) => [l.wIn, l.wkvB, l.wo, l.wGateUp, l.wDown])].map((m) => m.ptr);
    expect(matrices.map((p: number) => p % 4096)).toEqual(matrices.map(() => 0));
    const scratch = Object.values(s) as number[];
    expect(scratch.map((p) => p % 4096)).toEqual(scratch.map(() => 2048));
    model.dispose();
  });

  it('panel widths: at most PANEL_COLS, a multiple of 4, as few panels as that allows, none empty', () => {
    for (let cols = 1; cols <= 20_000; cols++) {
      const w = panelWidth(cols);
      if (cols <= PANEL_COLS) { expect(w).toBe(cols); continue; }
      const panels = Math.ceil(cols / w);
      expect(w).toBeLessThanOrEqual(PANEL_COLS);
      expect(w % 4).toBe(0);
      expect(panels).toBe(Math.ceil(cols / PANEL_COLS));
      expect(cols - (panels - 1) * w).toBeGreaterThan(0);
    }
  });

  it('matrices wider than 2048 columns are stored in equal column panels, each row-major; kv_b_proj and the embedding never', async () => {
    const config = tinyMlaConfig({ intermediate_size: 4100, num_hidden_layers: 1 });
    const src = await openSource({ config, tensors: makeRandomCheckpoint(config, 5) });
    const heap = new Heap();
    const w = placeWeights(parseConfig(src.config), src.tensors, heap);
    const down = w.layers[0].wDown!;
    expect([down.rows, down.cols, down.panelCols]).toEqual([64, 4100, 1368]); // 1368 + 1368 + 1364
    const want = new Float32Array(64 * 4100);
    src.tensors.read('model.layers.0.mlp.down_proj.weight', want);
    const got = heap.f32(down.ptr, 64 * 4100);
    for (const [r, c] of [[0, 0], [0, 1367], [0, 1368], [1, 0], [63, 4099], [17, 2800], [5, 2735], [5, 2736]]) {
      const p0 = Math.floor(c / 1368) * 1368, width = Math.min(1368, 4100 - p0);
      expect(got[64 * p0 + r * width + (c - p0)], `W[${r}, ${c}]`).toBe(want[r * 4100 + c]);
    }
    for (const m of [w.embed, w.layers[0].wkvB!, w.layers[0].wGateUp!]) expect(m.panelCols).toBe(m.cols);
  });

  it('kv_b_proj is stored with its rows grouped: W_UK of every head, then W_UV of every head', async () => {
    const config = tinyMlaConfig({ num_hidden_layers: 1 });
    const src = await openSource({ config, tensors: makeRandomCheckpoint(config, 6) });
    const c = parseConfig(src.config), a = c.attention as MlaAttention;
    const H = a.heads, dn = a.nopeDim, dv = a.vDim, dc = a.kvLoraRank;
    const heap = new Heap();
    const kvB = placeWeights(c, src.tensors, heap).layers[0].wkvB!;
    const hf = new Float32Array(H * (dn + dv) * dc);
    src.tensors.read('model.layers.0.self_attn.kv_b_proj.weight', hf);
    const got = heap.f32(kvB.ptr, H * (dn + dv) * dc);
    const row = (m: Float32Array, r: number) => Array.from(m.subarray(r * dc, (r + 1) * dc));
    for (let h = 0; h < H; h++) {
      for (const i of [0, dn - 1]) expect(row(got, h * dn + i), `W_UK head ${h} row ${i}`).toEqual(row(hf, h * (dn + dv) + i));
      for (const i of [0, dv - 1]) expect(row(got, H * dn + h * dv + i), `W_UV head ${h} row ${i}`).toEqual(row(hf, h * (dn + dv) + dn + i));
    }
  });

  it('loadModel takes a file map, a folder, and shards', async () => {
    const m1 = await loadModel(files);
    expect(m1.weightBytes).toBe(1_590_528 * 4);
    const m2 = await loadModel(writeFolder({ ...writeShardedSafetensors(tensorsFromSafetensors(files['model.safetensors']), 2), 'config.json': files['config.json'] }));
    expect(m2.weightBytes).toBe(1_590_528 * 4);
    expect(m2.config).toEqual(m1.config);
  });
});

describe('F16 and BF16 checkpoints', () => {
  const decode16 = (dtype: 'F16' | 'BF16', x: number): number => {
    if (dtype === 'BF16') return new Float32Array(new Uint32Array([toBF16Bits(x) << 16]).buffer)[0];
    const h = toF16Bits(x), s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
  };

  it.each(['F16', 'BF16'] as const)('%s weights are placed as the f32 of their rounded values (single file and shards)', async (dtype) => {
    for (const config of [tinyMlaConfig(), tinyLlamaConfig({ tie_word_embeddings: true })]) {
      const { tensors, files } = tinyFiles(config, 11, dtype);
      const rounded: Tensors = {};
      for (const [name, t] of Object.entries(tensors)) rounded[name] = { shape: t.shape, data: t.data.map((x) => decode16(dtype, x)) };
      const want = await placed({ config, tensors: rounded });
      expectSameBytes(await placed(files), want, `${dtype} file`);
      const shards = { ...writeShardedSafetensors(tensors, 4, { dtype }), 'config.json': files['config.json'] };
      expectSameBytes(await placed(shards), want, `${dtype} shards`);
      // Rounding really happened (the data is not representable in 16 bits).
      expect(Array.from(rounded['model.norm.weight'].data)).not.toEqual(Array.from(tensors['model.norm.weight'].data));
    }
  });

  it('one checkpoint may mix F32, F16 and BF16 tensors', async () => {
    const config = tinyMlaConfig();
    const tensors = makeRandomCheckpoint(config, 2);
    const dtypes: FloatDtype[] = ['F32', 'F16', 'BF16'];
    const mixed: Tensors & Record<string, { dtype?: FloatDtype }> = {};
    const rounded: Tensors = {};
    Object.entries(tensors).forEach(([name, t], i) => {
      const dtype = dtypes[i % 3];
      mixed[name] = { ...t, dtype };
      rounded[name] = { shape: t.shape, data: dtype === 'F32' ? t.data : t.data.map((x) => decode16(dtype, x)) };
    });
    const files = { 'config.json': enc(config), 'model.safetensors': writeSafetensors(mixed) };
    expectSameBytes(await placed(files), await placed({ config, tensors: rounded }), 'mixed');
  });

  it('Inf in an F16 weight and NaN in a BF16 weight are refused (NON_FINITE, naming the tensor)', async () => {
    const config = tinyMlaConfig();
    for (const [dtype, value] of [['F16', Infinity], ['F16', 1e6], ['BF16', NaN], ['BF16', -Infinity]] as const) {
      const tensors = makeRandomCheckpoint(config, 4);
      tensors['model.layers.1.self_attn.kv_b_proj.weight'].data[5] = value;
      const files = { 'config.json': enc(config), 'model.safetensors': writeSafetensors(tensors, undefined, { dtype }) };
      await expectCode(placed(files), 'NON_FINITE', 'model.layers.1.self_attn.kv_b_proj.weight');
      await expectCode(loadModel(files), 'NON_FINITE', 'model.layers.1.self_attn.kv_b_proj.weight');
    }
  });
});

describe('progress and streaming', () => {
  it('onProgress reports bytes placed: from 0 to the total, never backwards, total = weightBytes', async () => {
    const files = readFolder(FORTUNE_DIR);
    const calls: [number, number][] = [];
    const model = await loadModel(files, { onProgress: (done, total) => calls.push([done, total]) });
    const total = model.weightBytes;
    expect(calls[0]).toEqual([0, total]);
    expect(calls[calls.length - 1]).toEqual([total, total]);
    expect(calls.length).toBe(1 + 51); // one call per tensor (fortune-mla has 51)
    for (let i = 1; i < calls.length; i++) {
      expect(calls[i][1]).toBe(total);
      expect(calls[i][0]).toBeGreaterThan(calls[i - 1][0]);
    }
  });

  it('onProgress also counts right with tied embeddings (lm_head is not placed twice)', async () => {
    const config = tinyMlaConfig({ tie_word_embeddings: true });
    const { files } = tinyFiles(config);
    const calls: [number, number][] = [];
    await placed(files, (d, t) => calls.push([d, t]));
    const bytes = weightBytes(parseConfig(config));
    expect(bytes).toBeLessThan(weightBytes(parseConfig({ ...config, tie_word_embeddings: false })));
    expect(calls[calls.length - 1]).toEqual([bytes, bytes]);
  });

  it('an onProgress that is not a function is refused (BAD_INPUT)', async () => {
    // @ts-expect-error not a function
    await expectCode(loadModel(readFolder(FORTUNE_DIR), { onProgress: 5 }), 'BAD_INPUT');
  });

  it('a folder source reads only headers when opened, and each tensor from disk when it is placed', async () => {
    const dir = writeFolder(readFolder(FORTUNE_DIR));
    const size = readFileSync(join(dir, 'model.safetensors')).length;
    (globalThis as { gc?: () => void }).gc?.();
    const before = process.memoryUsage().arrayBuffers;
    const src = await openSource(dir);
    const grew = process.memoryUsage().arrayBuffers - before;
    expect(grew).toBeLessThan(size / 4); // the file is 6.4 MB; only its header and the small files were read
    // The data is read lazily: cut the file now and placing fails on the first tensor past the cut.
    truncateSync(join(dir, 'model.safetensors'), size - 100);
    const config = parseConfig(src.config);
    await expectCode(() => placeWeights(config, src.tensors, new Heap()), 'BAD_CHECKPOINT', 'model.safetensors');
  });
});

describe('the memory a model needs, from its config alone', () => {
  it('fortune-mla: weights exactly, scratch and a cache of one chunk (CHUNK positions), well under 4 GiB', () => {
    const c = parseConfig(JSON.parse(readFileSync(join(FORTUNE_DIR, 'config.json'), 'utf8')));
    const need = memoryNeed(c, KERNELS);
    // The weights, each matrix on a 4 KiB boundary: at most one boundary's slack per matrix and one for the block.
    expect(need.weights).toBe(weightBlockBytes(c));
    const matrices = [...expectedTensors(c).values()].filter((s) => s.length > 1).length;
    expect(need.weights).toBeGreaterThanOrEqual(1_590_528 * 4);
    expect(need.weights).toBeLessThanOrEqual(1_590_528 * 4 + (matrices + 1) * 4096);
    expect(need.cachePositions).toBe(CHUNK);
    expect(need.cache).toBe(CHUNK * 4 * (48 + 16) * 4);
    expect(need.scratch).toBeGreaterThan(CHUNK * 264 * 4); // at least the logits of a chunk
    expect(need.total).toBeGreaterThan(need.weights + need.scratch + need.cache);
    expect(need.total).toBeLessThan(WASM_MEMORY_LIMIT);
  });

  it('a model over 4 GiB is refused with OUT_OF_MEMORY naming its need, before tensors are checked or anything is allocated', async () => {
    // 2^24 × 128 × 4 bytes = 8 GiB of embedding alone; the checkpoint is empty (so MISSING_TENSOR would come next).
    const config = tinyMlaConfig({ vocab_size: 2 ** 24, hidden_size: 128 });
    const e = await codeOf(loadModel({ config, tensors: {} }));
    expect(e.code).toBe('OUT_OF_MEMORY');
    expect(e.message).toMatch(/needs \d+\.\d\d GiB \(\d+ bytes\)/);
    expect(e.message).toContain('4 GiB');
    const files = { 'config.json': enc(config), 'model.safetensors': writeSafetensors({}) };
    await expectCode(loadModel(files), 'OUT_OF_MEMORY');
  });

  it('absurd sizes (1e300, 2^53) are refused the same way, not computed into NaN', async () => {
    for (const over of [{ intermediate_size: 1e300 }, { hidden_size: 2 ** 53 }, { vocab_size: 2 ** 40 }]) {
      await expectCode(loadModel({ config: tinyMlaConfig(over), tensors: {} }), 'OUT_OF_MEMORY');
    }
  });

  it('an absurd layer count is a BAD_CONFIG, refused at once', async () => {
    const t0 = Date.now();
    await expectCode(loadModel({ config: tinyMlaConfig({ num_hidden_layers: 1e9 }), tensors: {} }), 'BAD_CONFIG', 'num_hidden_layers');
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});

describe('bad sources and checkpoints are refused with their code', () => {
  const base = tinyFiles();
  const single = base.files['model.safetensors'];
  const sharded = (): Record<string, Uint8Array> => ({ ...writeShardedSafetensors(base.tensors, 3), 'config.json': base.files['config.json'] });
  const S1 = 'model-00001-of-00003.safetensors', S2 = 'model-00002-of-00003.safetensors', S3 = 'model-00003-of-00003.safetensors';
  const INDEX = 'model.safetensors.index.json';
  const editIndex = (files: Record<string, Uint8Array>, edit: (ix: any) => void) => {
    const ix = JSON.parse(new TextDecoder().decode(files[INDEX]));
    edit(ix);
    return { ...files, [INDEX]: enc(ix) };
  };
  const firstTensorOf = (file: Uint8Array) => [...Object.keys(JSON.parse(new TextDecoder().decode(
    file.subarray(8, 8 + new DataView(file.buffer, file.byteOffset).getUint32(0, true)))))].find((k) => k !== '__metadata__')!;

  it('the sharded fixture itself loads (so each case below fails for its own defect)', async () => {
    expect((await placed(sharded())).length).toBe((await placed(base.files)).length);
  });

  it('a file map without config.json (BAD_SOURCE)', async () => {
    await expectCode(loadModel({ 'model.safetensors': single }), 'BAD_SOURCE', 'config.json');
  });

  it('a file map (or folder) with neither model.safetensors nor an index (BAD_SOURCE)', async () => {
    await expectCode(loadModel({ 'config.json': base.files['config.json'] }), 'BAD_SOURCE', 'model.safetensors.index.json');
    await expectCode(loadModel(writeFolder({ 'config.json': base.files['config.json'] })), 'BAD_SOURCE', 'model.safetensors');
  });

  it('a file map entry that is not bytes, and sources that are not sources (BAD_SOURCE)', async () => {
    // @ts-expect-error a string is not bytes
    await expectCode(loadModel({ 'config.json': '{}', 'model.safetensors': single }), 'BAD_SOURCE', 'config.json');
    for (const s of [42, null, [1, 2], true, '', new URL('ftp://example.com/model/'), 'data://x']) {
      // @ts-expect-error not sources
      await expectCode(loadModel(s), 'BAD_SOURCE');
    }
  });

  it('a folder that does not exist, or a file given as the folder (BAD_SOURCE)', async () => {
    await expectCode(loadModel('/nonexistent/model/folder'), 'BAD_SOURCE', 'does not exist');
    await expectCode(loadModel(join(FORTUNE_DIR, 'config.json')), 'BAD_SOURCE', 'not a folder');
    await expectCode(loadModel(new URL('file:///nonexistent/folder/')), 'BAD_SOURCE');
  });

  it('HTTP: no config.json (404), a server error on the weights (BAD_SOURCE), an unreachable host', async () => {
    const server = await serve(base.files, { 'model.safetensors': 500 });
    try {
      await expectCode(loadModel(server.url), 'BAD_SOURCE', 'HTTP 500');
      await expectCode(loadModel(server.url.replace('/m/', '/nothing/')), 'BAD_SOURCE', 'config.json');
    } finally { await server.close(); }
    await expectCode(loadModel('http://127.0.0.1:1/'), 'BAD_SOURCE');
  });

  it('config.json that is not JSON (BAD_CONFIG)', async () => {
    await expectCode(loadModel({ ...base.files, 'config.json': enc('{"vocab_size": 5,') }), 'BAD_CONFIG', 'config.json');
    await expectCode(loadModel({ ...base.files, 'config.json': new Uint8Array([0x7b, 0xff, 0x7d]) }), 'BAD_CONFIG');
  });

  it('a shard index listing a file that is missing (BAD_CHECKPOINT naming it)', async () => {
    const { [S2]: _gone, ...files } = sharded();
    await expectCode(loadModel(files), 'BAD_CHECKPOINT', S2);
    await expectCode(loadModel(writeFolder(files)), 'BAD_CHECKPOINT', S2);
  });

  it('a tensor in two shards (BAD_CHECKPOINT naming it and both files)', async () => {
    const files = sharded();
    const name = firstTensorOf(files[S1]);
    const t = base.tensors[name];
    // S3 gets a copy of S1's first tensor too.
    const s3Tensors: Tensors = {};
    for (const n of Object.keys(JSON.parse(new TextDecoder().decode(files[S3].subarray(8, 8 + new DataView(files[S3].buffer).getUint32(0, true)))))) {
      if (n !== '__metadata__') s3Tensors[n] = base.tensors[n];
    }
    s3Tensors[name] = t;
    await expectCode(loadModel({ ...files, [S3]: writeSafetensors(s3Tensors) }), 'BAD_CHECKPOINT', name, S1, S3);
  });

  it('a shard holding a tensor the weight_map does not list (BAD_CHECKPOINT)', async () => {
    const files = sharded();
    const name = firstTensorOf(files[S2]);
    await expectCode(loadModel(editIndex(files, (ix) => { delete ix.weight_map[name]; })), 'BAD_CHECKPOINT', name, 'not in the weight_map');
  });

  it('a weight_map that puts a tensor in the wrong shard (BAD_CHECKPOINT)', async () => {
    const files = sharded();
    const name = firstTensorOf(files[S2]);
    await expectCode(loadModel(editIndex(files, (ix) => { ix.weight_map[name] = S1; })), 'BAD_CHECKPOINT', name, S1, S2);
  });

  it('a weight_map listing a tensor that no shard holds (BAD_CHECKPOINT)', async () => {
    await expectCode(loadModel(editIndex(sharded(), (ix) => { ix.weight_map['model.layers.7.ghost.weight'] = S1; })),
      'BAD_CHECKPOINT', 'model.layers.7.ghost.weight', S1);
  });

  it('an index that is not JSON, has no weight_map, a non-string entry, or a path out of the folder (BAD_CHECKPOINT)', async () => {
    const files = sharded();
    await expectCode(loadModel({ ...files, [INDEX]: enc('{"weight_map": ') }), 'BAD_CHECKPOINT', INDEX);
    await expectCode(loadModel({ ...files, [INDEX]: enc({ metadata: {} }) }), 'BAD_CHECKPOINT', 'weight_map');
    await expectCode(loadModel({ ...files, [INDEX]: enc({ weight_map: [] }) }), 'BAD_CHECKPOINT', 'weight_map');
    await expectCode(loadModel(editIndex(files, (ix) => { ix.weight_map['model.norm.weight'] = 7; })), 'BAD_CHECKPOINT', 'model.norm.weight');
    for (const evil of ['../model.safetensors', '/etc/passwd', 'sub/shard.safetensors', '..', 'a\\b']) {
      await expectCode(loadModel(editIndex(files, (ix) => { ix.weight_map['model.norm.weight'] = evil; })), 'BAD_CHECKPOINT', JSON.stringify(evil));
    }
  });

  it('a header length larger than the file (BAD_CHECKPOINT), from a file map and from disk', async () => {
    const lying = rewriteHeader(single, () => {}, single.length);
    await expectCode(loadModel({ ...base.files, 'model.safetensors': lying }), 'BAD_CHECKPOINT', 'header length', 'model.safetensors');
    await expectCode(loadModel(writeFolder({ ...base.files, 'model.safetensors': lying })), 'BAD_CHECKPOINT', 'header length');
    // A shard that lies is named.
    const files = sharded();
    await expectCode(loadModel({ ...files, [S2]: rewriteHeader(files[S2], () => {}, 1 << 20) }), 'BAD_CHECKPOINT', S2);
  });

  it('a header length too small (the JSON is cut) (BAD_CHECKPOINT)', async () => {
    await expectCode(loadModel({ ...base.files, 'model.safetensors': rewriteHeader(single, () => {}, -5) }), 'BAD_CHECKPOINT');
  });

  it('offsets past the end of the file (BAD_CHECKPOINT naming the tensor), from a file map and from disk', async () => {
    const name = 'model.layers.1.mlp.down_proj.weight';
    const past = rewriteHeader(single, (h) => { h[name].data_offsets = h[name].data_offsets.map((o: number) => o + single.length); });
    await expectCode(loadModel({ ...base.files, 'model.safetensors': past }), 'BAD_CHECKPOINT', name, 'past the end');
    await expectCode(loadModel(writeFolder({ ...base.files, 'model.safetensors': past })), 'BAD_CHECKPOINT', name);
  });

  it('a truncated file (BAD_CHECKPOINT), from a file map and from disk', async () => {
    const cut = single.subarray(0, single.length - 1);
    await expectCode(loadModel({ ...base.files, 'model.safetensors': cut }), 'BAD_CHECKPOINT', 'truncated');
    await expectCode(loadModel(writeFolder({ ...base.files, 'model.safetensors': cut })), 'BAD_CHECKPOINT', 'truncated');
  });

  it('overlapping ranges (BAD_CHECKPOINT naming both tensors)', async () => {
    const a = 'model.norm.weight', b = 'model.layers.0.input_layernorm.weight';
    const overlapping = rewriteHeader(single, (h) => {
      // b (same size as a) moved to start halfway into a.
      const [begin] = h[a].data_offsets;
      const size = h[b].data_offsets[1] - h[b].data_offsets[0];
      h[b].data_offsets = [begin + 8, begin + 8 + size];
    });
    await expectCode(loadModel({ ...base.files, 'model.safetensors': overlapping }), 'BAD_CHECKPOINT', a, b, 'overlap');
  });

  it('an unsupported dtype (I64, F64, F8_E4M3, an unknown name) is named (UNSUPPORTED_DTYPE), before anything is allocated', async () => {
    const name = 'model.layers.0.self_attn.kv_a_layernorm.weight'; // 24 values
    for (const [dtype, bytesPer] of [['I64', 8], ['F64', 8], ['F8_E4M3', 1], ['I32', 4]] as const) {
      const t: Tensors & Record<string, any> = { ...base.tensors };
      const file = rewriteHeader(writeSafetensors(t), (h) => {
        // Re-declare the tensor as `dtype` over the right number of bytes, taken from the end of the data.
        const [b] = h[name].data_offsets;
        h[name] = { dtype, shape: [24], data_offsets: [b, b + 24 * bytesPer] };
        // Drop whatever else that range now covers, so that only the dtype is wrong.
        for (const [k, v] of Object.entries(h)) {
          if (k !== name && k !== '__metadata__' && (v as any).data_offsets[0] < b + 24 * bytesPer && (v as any).data_offsets[1] > b) delete h[k];
        }
      });
      const e = await codeOf(loadModel({ ...base.files, 'model.safetensors': file }));
      expect(e.code, e.message).toBe('UNSUPPORTED_DTYPE');
      expect(e.message).toContain(name);
      expect(e.message).toContain(dtype);
    }
    const weird = rewriteHeader(single, (h) => { h['model.norm.weight'].dtype = 'Q4_K'; });
    await expectCode(loadModel({ ...base.files, 'model.safetensors': weird }), 'UNSUPPORTED_DTYPE', 'model.norm.weight', 'Q4_K');
  });

  it('a wrong dtype size for the shape (BAD_CHECKPOINT) and a wrong shape for the config (BAD_SHAPE)', async () => {
    const name = 'model.layers.0.mlp.up_proj.weight';
    await expectCode(loadModel({ ...base.files, 'model.safetensors': rewriteHeader(single, (h) => { h[name].dtype = 'BF16'; }) }), 'BAD_CHECKPOINT', name);
    const reshaped = rewriteHeader(single, (h) => { h[name].shape = [...h[name].shape].reverse(); });
    await expectCode(loadModel({ ...base.files, 'model.safetensors': reshaped }), 'BAD_SHAPE', name);
  });

  it('missing and unexpected tensors from a file are named (MISSING_TENSOR, UNEXPECTED_TENSOR)', async () => {
    const name = 'model.layers.1.self_attn.q_b_proj.weight';
    const { [name]: _gone, ...rest } = base.tensors;
    await expectCode(loadModel({ ...base.files, 'model.safetensors': writeSafetensors(rest) }), 'MISSING_TENSOR', name);
    const extra = { ...base.tensors, 'model.layers.0.mlp.experts.0.up_proj.weight': { shape: [2], data: new Float32Array(2) } };
    await expectCode(loadModel({ ...base.files, 'model.safetensors': writeSafetensors(extra) }), 'UNEXPECTED_TENSOR', 'experts.0');
  });
});
