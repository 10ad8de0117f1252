// The worker pool: results bit-identical to one thread (every split path forced on small models),
// the fallback to one thread without SharedArrayBuffer, errors from workers, memory growth while
// workers live, and dispose() ending the workers (also: a process with a pool exits by itself).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../src/index.js';
import { Parallel, ThreadPool, threadsAvailable } from '../src/threads.js';
import { loadKernels, type SimdBuild } from '../src/wasm.js';
import { randomF32 } from './helpers.js';
import { makeRandomCheckpoint, tinyLlamaConfig, tinyMlaConfig, tinyMlaMoeV2Config } from './reference/model.js';

const text = (s: string) => [256, ...new TextEncoder().encode(s)];
const randomIds = (n: number, vocab: number, seed: number) =>
  Array.from({ length: n }, (_, i) => (i * 7919 + seed * 104729 + ((i * i) % 13)) % vocab);

/** Where this process has no SharedArrayBuffer (e.g. the suite run with --no-harmony-sharedarraybuffer
 * to check everything else with the pool off), only the fallback and the child-process tests run. */
const sab = typeof SharedArrayBuffer !== 'undefined';

/** Internals the tests reach into. */
const inside = (m: Model) => m as unknown as { decoder: { par: Parallel; heap: { shared: boolean } }; pool: ThreadPool | null };

/** Exactly equal, bit for bit (as Float32 bit patterns). */
function expectIdentical(a: Float32Array, b: Float32Array, what: string): void {
  expect(b.length, what).toBe(a.length);
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let first = -1, count = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) { if (first < 0) first = i; count++; }
  expect(first, `${what}: ${count} elements differ, the first at ${first} (${a[first]} vs ${b[first]})`).toBe(-1);
}

/** Every output the model gives for `ids`: forward on both paths, and prefill + steps on both. */
function outputs(m: Model, ids: number[]): Float32Array[] {
  const out = [m.forward(ids, { attention: 'naive' }), m.forward(ids, { attention: 'absorbed' })];
  for (const attention of ['naive', 'absorbed'] as const) {
    const s = m.createSession({ contextLength: ids.length });
    const split = Math.min(ids.length - 3, 70); // past a 64-token chunk when there are enough ids
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

  it('loadModel defaults to the cores (at most 4) and reports model.threads', async () => {
    const m = await loadModel();
    const os = await import('node:os');
    expect(m.threads).toBe(Math.min(os.availableParallelism(), 4));
    m.dispose();
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

  const configs: [string, Record<string, unknown>][] = [
    ['MLA, query compression', tinyMlaConfig({})],
    ['MLA, no query compression, 6 heads', tinyMlaConfig({ q_lora_rank: null, num_attention_heads: 6, num_key_value_heads: 6 })],
    ['MLA with MoE', tinyMlaMoeV2Config({})],
    ['Llama MHA', tinyLlamaConfig({ num_key_value_heads: 4 })],
    ['Llama GQA, 12 heads in 4 groups', tinyLlamaConfig({ num_attention_heads: 12, num_key_value_heads: 4, head_dim: 8, hidden_size: 96 })],
    ['Llama GQA, 32 heads in 16 groups', tinyLlamaConfig({ num_attention_heads: 32, num_key_value_heads: 16, head_dim: 4, hidden_size: 128 })],
    ['Llama MQA', tinyLlamaConfig({ num_key_value_heads: 1 })],
  ];
  describe.each(['relaxed', 'simd'] as SimdBuild[])('%s build', (simd) => {
    it.each(configs)('%s: every split forced, 2 and 3 threads give the bits of 1', async (_name, config) => {
      const source = { config, tensors: makeRandomCheckpoint(config, 13) };
      const ids = randomIds(100, config.vocab_size as number, 4);
      const one = await loadModel(source, { simd, threads: 1 });
      const a = outputs(one, ids);
      for (const threads of [2, 3]) {
        const many = await loadModel(source, { simd, threads });
        expect(many.threads).toBe(threads);
        inside(many).decoder.par.minChunkNs = 0; // split every matmul and attention call
        const b = outputs(many, ids);
        a.forEach((x, i) => expectIdentical(x, b[i], `${threads} threads, output ${i}`));
        many.dispose();
      }
      one.dispose();
    });
  });

  it('dispose() ends the workers; disposing a session does not', async () => {
    const m = await loadModel(undefined, { threads: 2 });
    const pool = inside(m).pool!;
    expect(pool.threads).toBe(2);
    inside(m).decoder.par.minChunkNs = 0;
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
    const par = new Parallel(K, pool, heap.alloc(2 * packBytes), packBytes);
    par.minChunkNs = 0;
    const before = heap.byteLength;
    heap.alloc(64 << 20); // grow by 64 MiB, then place everything above the old end
    const a = heap.alloc(M * Kd * 4), b = heap.alloc(N * Kd * 4), c1 = heap.alloc(M * N * 4), c2 = heap.alloc(M * N * 4);
    expect(a).toBeGreaterThan(before);
    heap.f32(a, M * Kd).set(randomF32(M * Kd, 1));
    heap.f32(b, N * Kd).set(randomF32(N * Kd, 2));
    K.matmul_nt(a, Kd, b, Kd, c1, N, M, Kd, N, heap.alloc(packBytes));
    par.matmul(true, a, Kd, b, Kd, c2, N, M, Kd, N);
    expectIdenticalF32(heap.f32(c1, M * N), heap.f32(c2, M * N));
    // An output past the end of memory traps in whichever thread runs each chunk.
    expect(() => par.matmul(true, a, Kd, b, Kd, 0xfff00000, N, M, Kd, N)).toThrow();
    heap.f32(c2, M * N).fill(0);
    par.matmul(true, a, Kd, b, Kd, c2, N, M, Kd, N);
    expectIdenticalF32(heap.f32(c1, M * N), heap.f32(c2, M * N));
    pool.dispose();
    await pool.exited;
  });

  it('many dispatches in a row, with more threads than cores: the same result each time', async () => {
    const k = await loadKernels({ threads: 4 });
    const K = k.kernels, heap = k.heap;
    const n = 4096, kd = 256;
    const packBytes = K.matmul_pack_bytes(kd, n);
    const par = new Parallel(K, k.pool, heap.alloc(4 * packBytes), packBytes);
    par.minChunkNs = 0;
    const x = heap.alloc(kd * 4), w = heap.alloc(n * kd * 4), y1 = heap.alloc(n * 4), y2 = heap.alloc(n * 4);
    heap.f32(x, kd).set(randomF32(kd, 3));
    heap.f32(w, n * kd).set(randomF32(n * kd, 4));
    K.matvec(w, kd, x, y1, n, kd);
    for (let r = 0; r < 500; r++) {
      par.matmul(true, x, kd, w, kd, y2, n, 1, kd, n);
      if (r % 100 === 0) expectIdenticalF32(heap.f32(y1, n), heap.f32(y2, n));
    }
    k.pool!.dispose();
  });
});

function expectIdenticalF32(a: Float32Array, b: Float32Array): void {
  expectIdentical(a.slice(), b.slice(), 'matmul');
}

// A plain Node process (no vitest), from a bundle of src/: without SharedArrayBuffer it runs on one
// thread; with a pool it exits by itself, after dispose() and also when the model is never disposed.
describe('in a separate Node process', () => {
  let dir = '';
  beforeAll(async () => {
    const { build } = await import('esbuild');
    dir = mkdtempSync(join(tmpdir(), 'mla-threads-'));
    // The bundle finds the kernels and the default model from itself, as dist/index.js does.
    for (const d of ['build', 'models']) symlinkSync(fileURLToPath(new URL(`../${d}`, import.meta.url)), join(dir, d));
    await build({
      entryPoints: [fileURLToPath(new URL('../src/index.ts', import.meta.url))],
      outfile: join(dir, 'dist', 'index.js'), bundle: true, format: 'esm', platform: 'neutral',
      target: 'es2022', external: ['node:*'], logLevel: 'warning',
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
