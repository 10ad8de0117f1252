// The worker pool: results bit-identical to one thread (every split path forced on small models),
// the fallback to one thread without SharedArrayBuffer, errors from workers, memory growth while
// workers live, dispose() ending the workers (also: a process with a pool exits by itself), the
// memory a pool takes (memoryNeed exact for any thread count), a worker dying mid-dispatch, and
// the worker's own source: type-checked, and in build/ as a fresh bundle of it.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/formats/config.js';
import { Heap } from '../src/host/heap.js';
import { loadModel, MlaError, type CacheFormat, type Model } from '../src/index.js';
import { memoryNeed, WASM_MEMORY_LIMIT } from '../src/model/memory.js';
import { CHUNK } from '../src/model/decoder.js';
import { defaultThreads, SMALL_MODEL_BYTES, threadsAvailable } from '../src/host/threads.js';
import { Ops, queryCuts } from '../src/model/ops.js';
import { ThreadPool } from '../src/host/pool.js';
import { loadKernels } from '../src/host/load.js';
import { type SimdBuild } from '../src/host/kernels.js';
import { expectClose, randomF32 } from './helpers.js';
import { matmulNN, matmulNT } from './reference/ops.js';
import { makeRandomCheckpoint, tinyLlamaConfig, tinyMlaConfig, tinyMlaMoeV2Config } from './reference/model.js';

const text = (s: string) => [256, ...new TextEncoder().encode(s)];
const randomIds = (n: number, vocab: number, seed: number) =>
  Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % vocab);

/** Where this process has no SharedArrayBuffer (e.g. the suite run with --no-harmony-sharedarraybuffer
 * to check everything else with the pool off), only the fallback and the child-process tests run. */
const sab = typeof SharedArrayBuffer !== 'undefined';

/** Internals the tests reach into. */
const inside = (m: Model) => m as unknown as {
  decoder: { ops: Ops; heap: Heap };
  pool: ThreadPool | null;
};
/** ops.matmul with its arguments in the kernels' order (strides in floats, item steps in bytes). */
function matmul(ops: Ops, nt: boolean, a: number, lda: number, b: number, ldb: number, c: number, ldc: number,
                m: number, k: number, n: number, batch = 1, aStep = 0, bStep = 0, cStep = 0): void {
  ops.matmul({ nt, a: { ptr: a, stride: lda, step: aStep }, b: { ptr: b, stride: ldb, step: bStep }, c: { ptr: c, stride: ldc, step: cStep },
    m, k, n, batch });
}
/** A pool's workers, to end one as its runtime might. */
const workersOf = (pool: ThreadPool) => (pool as unknown as { workers: { terminate(): void; exited: Promise<string> }[] }).workers;

/** Resolves with `p`, or fails the test after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not after ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}

/** The error `f` throws (failing the test when it returns). */
function thrown(f: () => unknown): MlaError {
  try { f(); } catch (e) { return e as MlaError; }
  throw new Error('did not throw');
}

/** Exactly equal, bit for bit (as Float32 bit patterns). */
function expectIdentical(a: Float32Array, b: Float32Array, what: string): void {
  expect(b.length, what).toBe(a.length);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let first = -1, count = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) { if (first < 0) first = i; count++; }
  expect(first, `${what}: ${count} elements differ, the first at ${first} (${a[first]} vs ${b[first]})`).toBe(-1);
}

/** Every output the model gives for `ids`: forward on both paths, and prefill + steps on both. */
function outputs(m: Model, ids: number[], cache: CacheFormat = 'f32'): Float32Array[] {
  const out = [m.forward(ids, { attention: 'naive', cache }), m.forward(ids, { attention: 'absorbed', cache })];
  for (const attention of ['naive', 'absorbed'] as const) {
    const s = m.createSession({ contextLength: ids.length, cache });
    const split = Math.min(ids.length - 3, CHUNK + 6); // past a chunk when there are enough ids
    out.push(s.prefill(ids.slice(0, split), { attention }));
    for (let t = split; t < ids.length; t++) out.push(s.step(ids[t], { attention }));
    s.dispose();
  }
  return out;
}

describe.skipIf(!sab)('threads', () => {
  it('a pool is started where SharedArrayBuffer and workers exist, on the threaded build', async () => {
    expect(threadsAvailable()).toBe(true);
    const k = await loadKernels({ threads: 2 });
    expect(k.pool?.threads).toBe(2);
    expect(k.heap.shared).toBe(true);
    expect(k.heap.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    k.pool!.dispose();
    const one = await loadKernels({ threads: 1 });
    expect(one.pool).toBeNull();
    expect(one.heap.shared).toBe(false);
    for (const bad of [0, 1.5, -2, '2', 1000]) {
      await expect(loadKernels({ threads: bad as number })).rejects.toMatchObject({ code: 'BAD_INPUT' });
    }
  });

  it('a given kernel module: the threaded build gets a pool, the plain one runs on one thread', async () => {
    const { readFileSync } = await import('node:fs');
    for (const [file, threads] of [['kernels-simd-mt.wasm', 2], ['kernels-simd.wasm', 1]] as const) {
      const wasmModule = await WebAssembly.compile(readFileSync(new URL(`../build/${file}`, import.meta.url)));
      const m = await loadModel(undefined, { wasmModule, threads: 2 });
      expect(m.threads, file).toBe(threads);
      expect(m.simd).toBe('simd');
      expect(m.forward(text('Hi')).every(Number.isFinite)).toBe(true);
      m.dispose();
    }
  });

  it('loadModel defaults to the cores (at most 4), or 1 for a model under SMALL_MODEL_BYTES, and reports model.threads', async () => {
    const os = await import('node:os');
    const cores = Math.min(os.availableParallelism(), 4);
    expect(await defaultThreads()).toBe(cores);
    expect(await defaultThreads(SMALL_MODEL_BYTES)).toBe(cores);
    expect(await defaultThreads(SMALL_MODEL_BYTES - 1)).toBe(1);
    const small = await loadModel(); // fortune-mla, 6.4 MB
    expect(small.threads).toBe(1);
    small.dispose();
    // Just over the line: 4 layers at hidden 512, MLP 2560, vocab 4096 (about 12.6 M floats).
    const config = tinyMlaConfig({ hidden_size: 512, intermediate_size: 2560, num_hidden_layers: 4, vocab_size: 4096, q_lora_rank: 256, kv_lora_rank: 128 });
    const big = await loadModel({ config, tensors: makeRandomCheckpoint(config, 2) });
    expect(big.weightBytes).toBeGreaterThanOrEqual(SMALL_MODEL_BYTES);
    expect(big.threads).toBe(cores);
    big.dispose();
  });

  it('fortune-mla gives bit-identical logits with 1 and 2 threads (sizes decide the splits)', async () => {
    const one = await loadModel(undefined, { threads: 1 });
    const two = await loadModel(undefined, { threads: 2 });
    expect(two.threads).toBe(2);
    const ids = [...text('Q: What is the meaning of life, the universe and everything?\nA: Forty-two, said the machine, '),
      ...text('after seven and a half million years of thought.')];
    const a = outputs(one, ids), b = outputs(two, ids);
    a.forEach((x, i) => expectIdentical(x, b[i], `output ${i}`));
    one.dispose(); two.dispose();
  });

  // Room for a prompt longer than a chunk (CHUNK + 36 ids: a second chunk in prefill and forward).
  const long = { max_position_embeddings: 2 * CHUNK };
  const configs: [string, Record<string, unknown>][] = [
    ['MLA, query compression', tinyMlaConfig(long)],
    ['MLA, no query compression, 6 heads', tinyMlaConfig({ ...long, q_lora_rank: null, num_attention_heads: 6, num_key_value_heads: 6 })],
    ['MLA with MoE', tinyMlaMoeV2Config(long)],
    ['MLA, MLP wider than a panel (down_proj in 3 column panels)', tinyMlaConfig({ ...long, intermediate_size: 4100 })],
    ['Llama MHA', tinyLlamaConfig({ ...long, num_key_value_heads: 4 })],
    ['Llama GQA, 12 heads in 4 groups', tinyLlamaConfig({ ...long, num_attention_heads: 12, num_key_value_heads: 4, head_dim: 8, hidden_size: 96 })],
    ['Llama GQA, 32 heads in 16 groups', tinyLlamaConfig({ ...long, num_attention_heads: 32, num_key_value_heads: 16, head_dim: 4, hidden_size: 128 })],
    ['Llama MQA', tinyLlamaConfig({ ...long, num_key_value_heads: 1 })],
  ];
  describe.each(['relaxed', 'simd'] as SimdBuild[])('%s build', (simd) => {
    it.each(configs)('%s: every split forced, 2 and 3 threads give the bits of 1', async (_name, config) => {
      const source = { config, tensors: makeRandomCheckpoint(config, 13) };
      const ids = randomIds(CHUNK + 36, config.vocab_size as number, 4);
      const one = await loadModel(source, { simd, threads: 1 });
      const a = outputs(one, ids);
      for (const threads of [2, 3]) {
        const many = await loadModel(source, { simd, threads });
        expect(many.threads).toBe(threads);
        inside(many).decoder.ops.minChunkNs = 0; // split every matmul and attention call
        const b = outputs(many, ids);
        a.forEach((x, i) => expectIdentical(x, b[i], `${threads} threads, output ${i}`));
        many.dispose();
      }
      one.dispose();
    });
  });

  // A narrow latent cache: attn_block_latent split by queries (prefill) and by segments of keys
  // (decode) as the f32 attention is, so the same bits on any thread count.
  it.each(['bf16', 'int8', 'int4'] as const)('MLA with a %s cache: every split forced, and split by keys, 2 and 3 threads give the bits of 1', async (cache) => {
    const config = configs[1][1];
    const source = { config, tensors: makeRandomCheckpoint(config, 15) };
    const ids = randomIds(CHUNK + 36, config.vocab_size as number, 6);
    for (const simd of ['relaxed', 'simd'] as SimdBuild[]) {
      let a: Float32Array[] | null = null;
      for (const threads of [1, 2, 3]) {
        const m = await loadModel(source, { simd, threads });
        inside(m).decoder.ops.minSegment = 16;
        if (threads > 1) inside(m).decoder.ops.minChunkNs = 0;
        const b = outputs(m, ids, cache);
        if (!a) a = b;
        else a.forEach((x, i) => expectIdentical(x, b[i], `${simd}, ${threads} threads, output ${i}`));
        m.dispose();
      }
    }
  });

  // Decode attention split by keys (flash-decoding segments), forced on short contexts: the same
  // segments whatever the threads, so the same bits; and close to the unsplit answer.
  it.each(configs.filter(([name]) => name.startsWith('MLA') || name.includes('MQA')))('%s: split by keys, 1, 2 and 3 threads give the same bits', async (_name, config) => {
    const source = { config, tensors: makeRandomCheckpoint(config, 14) };
    const ids = randomIds(CHUNK + 36, config.vocab_size as number, 5);
    const unsplit = await loadModel(source, { threads: 1 });
    const plain = outputs(unsplit, ids);
    unsplit.dispose();
    let a: Float32Array[] | null = null;
    for (const threads of [1, 2, 3]) {
      const m = await loadModel(source, { threads });
      inside(m).decoder.ops.minSegment = 16;
      if (threads > 1) inside(m).decoder.ops.minChunkNs = 0;
      const b = outputs(m, ids);
      if (!a) {
        a = b;
        // Only decode steps are split: they agree with the unsplit ones to rounding, and some differ.
        let split = 0;
        a.forEach((x, i) => {
          let worst = 0;
          for (let j = 0; j < x.length; j++) worst = Math.max(worst, Math.abs(x[j] - plain[i][j]));
          expect(worst, `output ${i}`).toBeLessThan(1e-4);
          if (worst > 0) split++;
        });
        expect(split).toBeGreaterThan(0);
      } else {
        a.forEach((x, i) => expectIdentical(x, b[i], `${threads} threads, output ${i}`));
      }
      m.dispose();
    }
  });

  it('dispose() ends the workers; disposing a session does not', async () => {
    const m = await loadModel(undefined, { threads: 2 });
    const pool = inside(m).pool!;
    expect(pool.threads).toBe(2);
    inside(m).decoder.ops.minChunkNs = 0;
    const s1 = m.createSession(), s2 = m.createSession();
    s1.prefill(text('one'));
    s1.dispose();
    expect(s2.prefill(text('two')).every(Number.isFinite)).toBe(true); // the pool still runs
    let exited = false;
    void pool.exited.then(() => { exited = true; });
    await new Promise((r) => setTimeout(r, 50));
    expect(exited).toBe(false);
    m.dispose();
    await Promise.race([pool.exited, new Promise((_, reject) => setTimeout(() => reject(new Error('workers still running 10 s after dispose()')), 10_000))]);
    expect(() => m.forward(text('x'))).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
  });
});

describe('without SharedArrayBuffer', () => {
  it('falls back to one thread when SharedArrayBuffer is missing', async () => {
    const g = globalThis as { SharedArrayBuffer?: unknown };
    const saved = g.SharedArrayBuffer;
    delete g.SharedArrayBuffer;
    try {
      expect(threadsAvailable()).toBe(false);
      const m = await loadModel(undefined, { threads: 2 });
      expect(m.threads).toBe(1);
      expect(inside(m).decoder.heap.shared).toBe(false);
      expect(m.forward(text('Hello')).every(Number.isFinite)).toBe(true);
      m.dispose();
    } finally {
      if (saved) g.SharedArrayBuffer = saved;
    }
  });
});

describe.skipIf(!sab)('the pool under the kernels', () => {
  it('workers see memory grown after they started, and a failing kernel throws without breaking the pool', async () => {
    const k = await loadKernels({ threads: 2 });
    const K = k.kernels, heap = k.heap, pool = k.pool!;
    const M = 16, Kd = 300, N = 1000;
    const packBytes = K.matmul_pack_bytes(Kd, N);
    const par = new Ops(K, pool, heap.alloc(2 * packBytes), packBytes);
    par.minChunkNs = 0;
    const before = heap.byteLength;
    heap.alloc(64 << 20); // grow by 64 MiB, then place everything above the old end
    const a = heap.alloc(M * Kd * 4), b = heap.alloc(N * Kd * 4), c1 = heap.alloc(M * N * 4), c2 = heap.alloc(M * N * 4);
    expect(a).toBeGreaterThan(before);
    heap.f32(a, M * Kd).set(randomF32(M * Kd, 1));
    heap.f32(b, N * Kd).set(randomF32(N * Kd, 2));
    K.matmul_nt(a, Kd, b, Kd, c1, N, M, Kd, N, heap.alloc(packBytes), false);
    matmul(par, true, a, Kd, b, Kd, c2, N, M, Kd, N);
    expectIdenticalF32(heap.f32(c1, M * N), heap.f32(c2, M * N));
    // An output past the end of memory traps in whichever thread runs each chunk.
    expect(() => matmul(par, true, a, Kd, b, Kd, 0xfff00000, N, M, Kd, N)).toThrow();
    heap.f32(c2, M * N).fill(0);
    matmul(par, true, a, Kd, b, Kd, c2, N, M, Kd, N);
    expectIdenticalF32(heap.f32(c1, M * N), heap.f32(c2, M * N));
    pool.dispose();
    await pool.exited;
  });

  it('a trap in a worker throws the RuntimeError a trap on this thread would, with its message', async () => {
    const k = await loadKernels({ threads: 2 });
    const K = k.kernels, heap = k.heap;
    const M = 128, Kd = 256, N = 2048; // the packed GEMM: every chunk packs into its thread's scratch
    const packBytes = K.matmul_pack_bytes(Kd, N);
    const a = heap.alloc(M * Kd * 4), b = heap.alloc(N * Kd * 4), c1 = heap.alloc(M * N * 4), c2 = heap.alloc(M * N * 4);
    heap.f32(a, M * Kd).set(randomF32(M * Kd, 5));
    heap.f32(b, N * Kd).set(randomF32(N * Kd, 6));
    const pack = heap.alloc(packBytes);
    // Thread 0's scratch is real; the worker's (pack + 1 · 3 GiB) is past the end of memory.
    const bad = new Ops(K, k.pool, pack, 3 * 2 ** 30);
    bad.minChunkNs = 0;
    let error: unknown = null;
    try { matmul(bad, true, a, Kd, b, Kd, c2, N, M, Kd, N); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(WebAssembly.RuntimeError);
    expect((error as Error).message).toMatch(/^memory access out of bounds.* \(in a worker thread\)$/);
    // The pool goes on.
    const good = new Ops(K, k.pool, heap.alloc(2 * packBytes), packBytes);
    K.matmul_nt(a, Kd, b, Kd, c1, N, M, Kd, N, pack, false);
    matmul(good, true, a, Kd, b, Kd, c2, N, M, Kd, N);
    expectIdenticalF32(heap.f32(c1, M * N), heap.f32(c2, M * N));
    k.pool!.dispose();
  });

  it('one row times a batch (decode\'s per-head products), split by item pairs or by columns: the bits of one thread', async () => {
    const k = await loadKernels({ threads: 2 });
    const K = k.kernels, heap = k.heap;
    const par = new Ops(K, k.pool, 0, 0), alone = new Ops(K, null, 0, 0);
    par.minChunkNs = 0;
    // Items of [n, kd] (nt) or [kd, n] (nn); 16 heads of 128 × 512 (V2-Lite) pair 2 MiB apart.
    for (const [batch, n, kd] of [[16, 128, 512], [9, 33, 70], [3, 50, 7], [2, 129, 5], [5, 4100, 3]]) {
      for (const nt of [true, false]) {
        const aInc = (kd + 3) * 4, bInc = n * kd * 4, cInc = (n + 1) * 4;
        const a = heap.alloc(batch * aInc), b = heap.alloc(batch * bInc);
        const c1 = heap.alloc(batch * cInc), c2 = heap.alloc(batch * cInc);
        heap.f32(a, batch * aInc / 4).set(randomF32(batch * aInc / 4, batch));
        heap.f32(b, batch * bInc / 4).set(randomF32(batch * bInc / 4, n));
        heap.f32(c1, batch * cInc / 4).fill(-1);
        heap.f32(c2, batch * cInc / 4).fill(-1);
        const ld = nt ? kd : n;
        matmul(alone, nt, a, kd, b, ld, c1, n, 1, kd, n, batch, aInc, bInc, cInc);
        matmul(par, nt, a, kd, b, ld, c2, n, 1, kd, n, batch, aInc, bInc, cInc);
        expectIdenticalF32(heap.f32(c1, batch * cInc / 4), heap.f32(c2, batch * cInc / 4));
        // And close to the reference, item by item (the padding float after each y untouched).
        for (let i = 0; i < batch; i++) {
          const x = heap.f32(a + i * aInc, kd), w = heap.f32(b + i * bInc, n * kd), y = heap.f32(c2 + i * cInc, n + 1);
          const ref = nt ? matmulNT(x, w, 1, kd, n) : matmulNN(x, w, 1, kd, n);
          expectClose(y.subarray(0, n), ref, 1e-5, 1e-5 * Math.sqrt(kd), `${nt ? 'nt' : 'nn'} batch ${batch}, item ${i}`);
          expect(y[n]).toBe(-1);
        }
        heap.release(c2, batch * cInc); heap.release(c1, batch * cInc);
        heap.release(b, batch * bInc); heap.release(a, batch * aInc);
      }
    }
    k.pool!.dispose();
  });

  it('many dispatches in a row, with more threads than cores: the same result each time', async () => {
    const k = await loadKernels({ threads: 4 });
    const K = k.kernels, heap = k.heap;
    const n = 4096, kd = 256;
    const packBytes = K.matmul_pack_bytes(kd, n);
    const par = new Ops(K, k.pool, heap.alloc(4 * packBytes), packBytes);
    par.minChunkNs = 0;
    const x = heap.alloc(kd * 4), w = heap.alloc(n * kd * 4), y1 = heap.alloc(n * 4), y2 = heap.alloc(n * 4);
    heap.f32(x, kd).set(randomF32(kd, 3));
    heap.f32(w, n * kd).set(randomF32(n * kd, 4));
    K.matvec(w, kd, x, y1, n, kd, false);
    for (let r = 0; r < 500; r++) {
      matmul(par, true, x, kd, w, kd, y2, n, 1, kd, n);
      if (r % 100 === 0) expectIdenticalF32(heap.f32(y1, n), heap.f32(y2, n));
    }
    k.pool!.dispose();
  });
});

describe('queryCuts (attention split by queries into equal work)', () => {
  it('cuts a causal prefill chunk where the work halves, an equal-position batch evenly, every chunk a step or more', () => {
    // 128 tokens × 16 heads from position 0, steps of 16 queries (one token): token t reads t + 1
    // keys, so half the work is done at t ≈ 128/√2 ≈ 90.
    const cut = queryCuts(2, 128, 16, 2048, 0, 16, 0, 128)[1];
    expect(cut).toBeGreaterThanOrEqual(88);
    expect(cut).toBeLessThanOrEqual(92);
    // Far into the context the positions barely differ: close to even.
    expect(queryCuts(2, 128, 16, 2048, 4000, 16, 0, 4128)[1]).toBe(65); // work 258144 at 64, 262211 at 65 of 520384
    // One position for every query (decode's heads): even, ragged last step included.
    expect(queryCuts(3, 5, 4, 18, 100, 18, 0, 101)).toEqual([0, 2, 3, 5]);
    // More chunks than there is work for: still one step each, in order.
    expect(queryCuts(4, 4, 4, 16, 0, 4, 0, 1)).toEqual([0, 1, 2, 3, 4]);
  });
});

describe.skipIf(!sab)('Ops.read (the benchmarks\' in-process read probe)', () => {
  it('reads in chunks of 16 MiB or more on every thread, in either pattern, and says how many bytes', async () => {
    const k = await loadKernels({ threads: 2 });
    const par = new Ops(k.kernels, k.pool, 0, 0), alone = new Ops(k.kernels, null, 0, 0);
    const bytes = 70 << 20, ptr = k.heap.alloc(bytes);
    // 4 chunks of 17.5 MiB, rounded down to the 4 MiB blocks probe_read_pairs reads whole.
    expect(par.read(ptr, bytes, false)).toBe(64 << 20);
    expect(par.read(ptr, bytes, true)).toBe(64 << 20);
    expect(alone.read(ptr, bytes, false)).toBe(bytes);
    expect(alone.read(ptr, bytes, true)).toBe(68 << 20);
    expect(par.read(ptr, 20 << 20, true)).toBe(20 << 20); // one chunk: read on this thread
    // A chunk past the end of memory traps in whichever thread reads it: the dispatch throws.
    const end = k.heap.memory.buffer.byteLength;
    expect(() => par.read(end - (32 << 20), 64 << 20, false)).toThrow();
    k.pool!.dispose();
  });
});

describe.skipIf(!sab)('the memory a pool takes', () => {
  it('after loading and a session\'s prefill + step, the memory is exactly memoryNeed\'s total, for 1 and 2 threads', async () => {
    const totals: number[] = [];
    for (const threads of [1, 2]) {
      const m = await loadModel(undefined, { threads });
      expect(m.threads).toBe(threads);
      const { heap } = inside(m).decoder;
      const k = (await loadKernels()).kernels; // the same build: the same scratch sizes
      const s = m.createSession();
      s.prefill(text('Q: What is the meaning of life?\nA:'));
      s.step(32);
      const need = memoryNeed(m.config, k, { threads, cachePositions: s.capacity });
      expect(heap.byteLength, `${threads} thread(s)`).toBe(need.total);
      expect(need.pool > 0).toBe(threads > 1);
      totals.push(need.scratch + need.pool);
      m.dispose();
    }
    // The second thread's matmul packing scratch and the control block: more than a page's rounding.
    expect(totals[1] - totals[0]).toBeGreaterThan(65536);
  });

  it('the 4 GiB check counts the threads: a model that fits on one thread is refused on two', async () => {
    const { kernels, pool } = await loadKernels({ threads: 2 });
    pool!.dispose();
    const config = (vocab: number) => tinyMlaConfig({ vocab_size: vocab, hidden_size: 128 });
    const need = (vocab: number, threads: number) => memoryNeed(parseConfig(config(vocab)), kernels, { threads }).total;
    // The largest vocabulary that fits on one thread.
    let lo = 1, hi = 2 ** 24;
    while (hi - lo > 1) { const mid = Math.floor((lo + hi) / 2); if (need(mid, 1) <= WASM_MEMORY_LIMIT) lo = mid; else hi = mid; }
    expect(need(lo, 2)).toBeGreaterThan(WASM_MEMORY_LIMIT);
    // The checkpoint is empty: on one thread the memory check passes and the tensors are found missing.
    await expect(loadModel({ config: config(lo), tensors: {} }, { threads: 1 })).rejects.toMatchObject({ code: 'MISSING_TENSOR' });
    const e = await loadModel({ config: config(lo), tensors: {} }, { threads: 2 }).catch((x: unknown) => x as MlaError);
    expect(e).toBeInstanceOf(MlaError);
    expect(e).toMatchObject({ code: 'OUT_OF_MEMORY', message: expect.stringContaining('for 2 threads') });
  });
});

/**
 * A kernel module for the pool alone: matmul_nt(flag) sets the i32 at `flag` to 1, then spins
 * until the one after it is non-zero (nobody sets it): a worker that runs a chunk stays in it.
 */
const STUCK_KERNEL = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x05, 0x01, 0x60, 0x01, 0x7f, 0x00, // type (i32) -> ()
  0x02, 0x12, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, // import env.memory
  0x02, 0x03, 0x01, 0x80, 0x80, 0x04, //   shared, 1 to 65536 pages
  0x03, 0x02, 0x01, 0x00,
  0x07, 0x0d, 0x01, 0x09, 0x6d, 0x61, 0x74, 0x6d, 0x75, 0x6c, 0x5f, 0x6e, 0x74, 0x00, 0x00, // export matmul_nt
  0x0a, 0x18, 0x01, 0x16, 0x00,
  0x20, 0x00, 0x41, 0x01, 0xfe, 0x17, 0x02, 0x00, // i32.atomic.store [flag] = 1
  0x03, 0x40, 0x20, 0x00, 0xfe, 0x10, 0x02, 0x04, 0x45, 0x0d, 0x00, 0x0b, // loop while [flag + 4] == 0
  0x0b,
]);

describe.skipIf(!sab)('a worker that dies', () => {
  it('mid-dispatch, inside its chunk: the dispatch throws WORKER_FAILED in bounded time, then runs alone', async () => {
    const heap = new Heap(undefined, { shared: true });
    const flag = heap.alloc(64);
    heap.i32(flag, 2).fill(0);
    const I = new Int32Array(heap.memory.buffer);
    let pool!: ThreadPool;
    let calls = 0;
    // The calling thread's matmul_nt: on its chunk, wait for the worker to be inside the other one, then end that worker.
    const matmul_nt = (f: number) => {
      if (calls++ > 0) return;
      const t = Date.now();
      while (Atomics.load(I, f / 4) === 0) if (Date.now() - t > 20_000) throw new Error('the worker never ran its chunk');
      workersOf(pool)[0].terminate();
    };
    pool = (await ThreadPool.create(await WebAssembly.compile(STUCK_KERNEL), heap, { matmul_nt } as never, 2))!;
    expect(pool.threads).toBe(2);
    pool.stallMs = 200;
    const dispatch = () => {
      for (let c = 0; c < 2; c++) { pool.chunk(); pool.args[pool.task(0)] = flag; }
      pool.run();
    };
    const t0 = Date.now();
    const e = thrown(dispatch);
    expect(e).toBeInstanceOf(MlaError);
    expect(e.code).toBe('WORKER_FAILED');
    expect(e.message).toContain('no worker thread finished a chunk for 200 ms');
    expect(Date.now() - t0).toBeLessThan(15_000); // the stall limit, not forever
    expect(pool.failed).toBe(true);
    // Until the workers have exited, a dispatch still throws (none is left running in the background).
    expect(thrown(dispatch).code).toBe('WORKER_FAILED');
    await within(pool.exited, 10_000, 'the workers exit');
    calls = 0;
    dispatch();
    expect(calls).toBe(2); // both chunks, on this thread
    pool.dispose();
  });

  it('between calls (its exit is heard): the next call throws WORKER_FAILED, the model goes on on one thread, same logits', async () => {
    const ids = text('Q: What is the meaning of life?\nA:');
    const one = await loadModel(undefined, { threads: 1 });
    const s1 = one.createSession();
    s1.prefill(ids);
    const ref = [s1.step(32), s1.step(33)];
    one.dispose();

    const m = await loadModel(undefined, { threads: 2 });
    const pool = inside(m).pool!;
    inside(m).decoder.ops.minChunkNs = 0; // every call dispatches
    const s = m.createSession();
    s.prefill(ids);
    const worker = workersOf(pool)[0];
    worker.terminate();
    expect(await within(worker.exited, 10_000, 'the worker exits')).toMatch(/^exited with code/);
    expect(m.threads).toBe(1);
    const e = thrown(() => s.step(32));
    expect(e).toBeInstanceOf(MlaError);
    expect(e.code).toBe('WORKER_FAILED');
    expect(e.message).toMatch(/^worker thread 1 exited with code/);
    expect(s.position).toBe(ids.length); // the abandoned step left the session as it was
    await within(pool.exited, 10_000, 'the other workers exit');
    expect(pool.useful).toBe(false); // reported and stopped: Ops splits nothing any more
    expectIdentical(ref[0], s.step(32), 'first step after');
    expectIdentical(ref[1], s.step(33), 'second step after');
    m.dispose();
    expect(() => m.forward(ids)).toThrow(expect.objectContaining({ code: 'DISPOSED' }));
  });
});

function expectIdenticalF32(a: Float32Array, b: Float32Array): void {
  expectIdentical(a.slice(), b.slice(), 'matmul');
}

// The worker is a typed module (src/host/worker.ts and its two entries); workers.ts starts it from
// the text of its bundle in build/worker-source.js, which must be the bundle of today's source.
describe('the worker\'s source', () => {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const entries = ['src/host/worker.ts', 'src/host/worker-node.ts', 'src/host/worker-web.ts'];

  it('is type-checked with the library (tsconfig.json), without errors', async () => {
    const ts = (await import('typescript')).default;
    const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} })!;
    expect(config.fileNames).toEqual(expect.arrayContaining(entries.map((f) => join(root, f).replaceAll('\\', '/'))));
    const program = ts.createProgram(entries.map((f) => join(root, f)), { ...config.options, noEmit: true });
    const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    expect(errors).toEqual([]);
  });

  it('is in build/ as a fresh bundle of src/host/worker.ts (a stale build cannot ship)', async () => {
    // @ts-expect-error: a plain .mjs script without declarations
    const { workerFiles } = await import('../scripts/worker-source.mjs');
    const files: Record<string, string> = await workerFiles();
    expect(Object.keys(files).sort()).toEqual(['worker-node.cjs', 'worker-source.d.ts', 'worker-source.js', 'worker-web.js']);
    for (const [name, text] of Object.entries(files)) {
      expect(readFileSync(join(root, 'build', name), 'utf8'), `build/${name}: run node scripts/build.mjs`).toBe(text);
    }
    const { NODE_WORKER, WEB_WORKER } = await import('../build/worker-source.js');
    expect(NODE_WORKER).toBe(files['worker-node.cjs']);
    expect(WEB_WORKER).toBe(files['worker-web.js']);
    // Node evaluates its worker as CommonJS: no import statement; the web one needs nothing of Node.
    expect(NODE_WORKER).not.toMatch(/^\s*(import|export)\b/m);
    expect(NODE_WORKER).toContain('require("node:worker_threads")');
    expect(WEB_WORKER).not.toMatch(/^\s*(import|export)\b|\brequire\(|node:/m);
  });
});

// A plain Node process (no vitest), from a bundle of src/: without SharedArrayBuffer it runs on one
// thread; with a pool it exits by itself, after dispose() and also when the model is never disposed.
describe('in a separate Node process', () => {
  let dir = '';
  beforeAll(async () => {
    const { build } = await import('esbuild');
    // @ts-expect-error: a plain .mjs script without declarations
    const { packageUrls } = await import('../scripts/package-urls.mjs');
    dir = mkdtempSync(join(tmpdir(), 'mla-threads-'));
    // The bundle finds the kernels and the default model from itself, as dist/index.js does.
    for (const d of ['build', 'models']) symlinkSync(fileURLToPath(new URL(`../${d}`, import.meta.url)), join(dir, d));
    await build({
      entryPoints: [fileURLToPath(new URL('../src/index.ts', import.meta.url))],
      outfile: join(dir, 'dist', 'index.js'), bundle: true, format: 'esm', platform: 'neutral',
      target: 'es2022', external: ['node:*'], logLevel: 'warning', plugins: [packageUrls],
    });
  });
  afterAll(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  function runNode(flags: string[], body: string): { status: number | null; out: string; ms: number } {
    const script = join(dir, `run-${Math.random().toString(36).slice(2)}.mjs`);
    writeFileSync(script, `import { loadModel } from './dist/index.js';\n${body}\n`);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [...flags, script], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, out: `${r.stdout}${r.stderr}`, ms: Date.now() - t0 };
  }

  it('--no-harmony-sharedarraybuffer: one thread, same logits', () => {
    const body = `
      const m = await loadModel(undefined, { threads: 2 });
      const l = m.forward([256, 72, 105]);
      console.log(JSON.stringify({ threads: m.threads, sab: typeof SharedArrayBuffer, sum: l.reduce((s, x) => s + x, 0) }));`;
    const off = runNode(['--no-harmony-sharedarraybuffer'], body);
    expect(off.status, off.out).toBe(0);
    const on = runNode([], body);
    expect(on.status, on.out).toBe(0);
    const a = JSON.parse(off.out.trim().split('\n').at(-1)!), b = JSON.parse(on.out.trim().split('\n').at(-1)!);
    expect(a).toMatchObject({ threads: 1, sab: 'undefined' });
    expect(b).toMatchObject({ threads: 2, sab: 'function' });
    expect(a.sum).toBe(b.sum);
  });

  it('a process with a pool exits by itself, disposed or not', () => {
    for (const dispose of [true, false]) {
      const r = runNode([], `
        const m = await loadModel(undefined, { threads: 2 });
        m.forward([256, 72, 105]);
        ${dispose ? 'm.dispose();' : ''}
        console.log('threads', m.threads);`);
      expect(r.status, r.out).toBe(0);
      expect(r.out).toContain('threads 2');
      expect(r.ms).toBeLessThan(30_000);
    }
  });
});
