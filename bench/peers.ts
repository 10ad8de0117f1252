// Our matmul/matvec beside the peers on the same shapes, each in a fresh Node process with the
// same timing harness: onnxruntime-web (its wasm backend, in Node), @tensorflow/tfjs-backend-wasm
// (XNNPACK) and onnxruntime-node (native, the ceiling), at 1 and 2 threads where the peer has
// threads. The peers are devDependencies imported by name at run time; one that fails to load is
// skipped with its error as the note. ONNX MatMul models are written by bench/onnx.ts.
//
// Shapes are M×K×N with the weights B constant (an ONNX initializer / a tfjs tensor made once):
// prefill-like GEMMs 128×2048×2048 and 512×2048×2048, and the decode GEMV 1×4096×4096 (64 MiB of
// weights, past the last-level cache of one CCD). Peers get B as [K, N] (their natural layout, which
// they may prepack once); ours is the decoder's layout, B as [N, K] (Hugging Face's), with matmul_nt
// and matvec. A peer's time is one `run` call including its copies of the input and output tensors;
// ours is one kernel call (the input already in WebAssembly memory).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { matmulModel } from './onnx.js';
import { loadKernels, Ops, type SimdBuild } from '../src/internal.js';

export type PeerName = 'mla-wasm' | 'onnxruntime-web' | 'tfjs-backend-wasm' | 'onnxruntime-node';

export interface PeerSpec {
  peer: PeerName;
  threads: number;
  quick: boolean;
  /** our build, for peer 'mla-wasm' */
  build?: SimdBuild;
}

export interface PeerRow {
  shape: string;
  m: number; k: number; n: number;
  /** best time of one call, ms */
  ms: number;
  gflops: number;
  /** bytes of weights read per ms, for the GEMV */
  gbs: number;
}

export interface PeerResult {
  peer: PeerName;
  /** package version, or our build */
  version: string;
  threads: number;
  ok: boolean;
  note?: string;
  rows: PeerRow[];
}

export const SHAPES: [number, number, number][] = [[128, 2048, 2048], [512, 2048, 2048], [1, 4096, 4096]];

function random(len: number, seed: number): Float32Array {
  const v = new Float32Array(len);
  let s = seed >>> 0;
  for (let i = 0; i < len; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 2147483648 - 1;
  }
  return v;
}

/** A runnable case per shape: `call()` runs one multiplication (awaiting it if the peer is async). */
interface Runner {
  version: string;
  /** the thread count the peer reports it runs with, when it says */
  threadsInUse?: number;
  prepare(m: number, k: number, n: number): Promise<() => unknown>;
}

const requireHere = createRequire(import.meta.url);
// Imported by a computed name so that bundlers and runtimes do not try to resolve them up front.
const dyn = (name: string): Promise<any> => import(name);
/** A package's version, from the package.json above its entry point (some export maps hide it). */
function versionOf(pkg: string): string {
  try {
    const fs = requireHere('node:fs'), path = requireHere('node:path');
    for (let dir = path.dirname(requireHere.resolve(pkg)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
      const file = path.join(dir, 'package.json');
      if (fs.existsSync(file)) {
        const json = JSON.parse(fs.readFileSync(file, 'utf8'));
        if (json.name === pkg) return json.version;
      }
    }
  } catch { /* unknown */ }
  return '?';
}

/**
 * The GEMV reads 64 MiB of weights: a call finding them in a (possibly large, shared) last-level
 * cache would measure the cache. So every runner keeps COPIES different weight matrices for it and
 * rotates through them, 256 MiB in all, as the kernel bench does.
 */
const COPIES = 4;
const copiesFor = (m: number) => (m === 1 ? COPIES : 1);
function rotate(calls: (() => unknown)[]): () => unknown {
  let i = 0;
  return () => calls[i++ % calls.length]();
}

async function onnxRunner(pkg: 'onnxruntime-web' | 'onnxruntime-node', threads: number): Promise<Runner> {
  const ort = await dyn(pkg);
  const web = pkg === 'onnxruntime-web';
  if (web) {
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = 'error';
  }
  return {
    version: versionOf(pkg),
    async prepare(m, k, n) {
      const options: Record<string, unknown> = { executionProviders: [web ? 'wasm' : 'cpu'], graphOptimizationLevel: 'all' };
      if (!web) Object.assign(options, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential' });
      const a = new ort.Tensor('float32', random(m * k, 5), [m, k]);
      const calls = [];
      for (let c = 0; c < copiesFor(m); c++) {
        const session = await ort.InferenceSession.create(matmulModel(m, k, n, random(k * n, 11 + c)), options);
        calls.push(() => session.run({ a }));
      }
      return rotate(calls);
    },
  };
}

async function tfjsRunner(threads: number): Promise<Runner> {
  // CommonJS entry points: their ESM builds import files without extensions, which Node refuses.
  const tf = requireHere('@tensorflow/tfjs-core');
  const wasm = requireHere('@tensorflow/tfjs-backend-wasm');
  wasm.setThreadsCount(threads);
  if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") failed');
  await tf.ready();
  return {
    version: versionOf('@tensorflow/tfjs-backend-wasm'),
    threadsInUse: wasm.getThreadsCount(),
    async prepare(m, k, n) {
      const a = tf.tensor2d(random(m * k, 5), [m, k]);
      const calls = [];
      for (let c = 0; c < copiesFor(m); c++) {
        const b = tf.tensor2d(random(k * n, 11 + c), [k, n]);
        calls.push(() => {
          const y = tf.matMul(a, b);
          y.dataSync();
          y.dispose();
        });
      }
      return rotate(calls);
    },
  };
}

/** Ours as the decoder calls it: through Ops, which splits a call across the worker pool. */
async function oursRunner(build: SimdBuild, threads: number): Promise<Runner> {
  const { kernels: K, heap, build: got, pool } = await loadKernels({ simd: build, threads });
  const fill = (ptr: number, len: number, seed: number) => heap.f32(ptr, len).set(random(len, seed));
  return {
    version: `mla-wasm ${got} build`,
    threadsInUse: pool?.threads ?? 1,
    async prepare(m, k, n) {
      const bs = Array.from({ length: copiesFor(m) }, (_, c) => { const b = heap.alloc(k * n * 4); fill(b, k * n, 11 + c); return b; });
      const a = heap.alloc(m * k * 4 + 4096), c = heap.alloc(m * n * 4 + 4096);
      // the vector 2 KiB off W's offset within 4 KiB (as the kernel bench places it)
      const x = a + ((bs[0] + 2048 - a) & 4095), y = c + ((bs[0] + 2048 - c) & 4095);
      fill(x, m * k, 5);
      const packBytes = K.matmul_pack_bytes(k, n);
      const ops = new Ops(K, pool, heap.alloc(threads * packBytes), packBytes);
      return rotate(bs.map((b) => () => ops.matmul({ nt: true, a: { ptr: x, stride: k }, b: { ptr: b, stride: k }, c: { ptr: y, stride: n }, m, k, n })));
    },
  };
}

/** Best time of one call: ~0.3 s of warm-up (V8 and the peers tier up), then best of several rounds. */
async function time(call: () => unknown, approxMs: number, quick: boolean): Promise<number> {
  const warmUntil = performance.now() + (quick ? 150 : 300);
  let calls = 0;
  while (calls < 3 || performance.now() < warmUntil) { await call(); calls++; }
  const reps = Math.max(3, Math.min(quick ? 10 : 40, Math.round((quick ? 300 : 800) / approxMs)));
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await call();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Runs in the child process: measure one peer at one thread count on every shape. */
export async function peerWorker(spec: PeerSpec): Promise<PeerResult> {
  const base = { peer: spec.peer, threads: spec.threads };
  let runner: Runner;
  try {
    runner = spec.peer === 'mla-wasm' ? await oursRunner(spec.build ?? 'relaxed', spec.threads)
      : spec.peer === 'tfjs-backend-wasm' ? await tfjsRunner(spec.threads)
      : await onnxRunner(spec.peer, spec.threads);
  } catch (e) {
    return { ...base, version: versionOf(spec.peer === 'tfjs-backend-wasm' ? '@tensorflow/tfjs-backend-wasm' : spec.peer), ok: false, note: `failed to load: ${String((e as Error)?.message ?? e).split('\n')[0]}`, rows: [] };
  }
  const rows: PeerRow[] = [];
  let note: string | undefined;
  if (runner.threadsInUse !== undefined && runner.threadsInUse !== spec.threads) {
    // Not measured again: it would repeat the 1-thread rows under a 2-thread label.
    return { ...base, version: runner.version, ok: false, note: `asked for ${spec.threads} threads, it runs ${runner.threadsInUse} here`, rows: [] };
  }
  for (const [m, k, n] of SHAPES) {
    try {
      const call = await runner.prepare(m, k, n);
      const ms = await time(call, Math.max(0.5, (2 * m * k * n) / 3e7), spec.quick);
      rows.push({ shape: `${m}×${k}×${n}`, m, k, n, ms, gflops: (2 * m * k * n) / ms / 1e6, gbs: (k * n * 4) / ms / 1e6 });
    } catch (e) {
      note = `${m}×${k}×${n} failed: ${String((e as Error)?.message ?? e).split('\n')[0]}`;
    }
  }
  return { ...base, version: runner.version, ok: rows.length > 0, ...(note ? { note } : {}), rows };
}

/** The peers measured, in order; each runs in its own process. */
export const PEER_SPECS: { peer: PeerName; threads: number }[] = [
  { peer: 'mla-wasm', threads: 1 },
  { peer: 'mla-wasm', threads: 2 },
  { peer: 'onnxruntime-web', threads: 1 },
  { peer: 'onnxruntime-web', threads: 2 },
  { peer: 'tfjs-backend-wasm', threads: 1 },
  { peer: 'tfjs-backend-wasm', threads: 2 },
  { peer: 'onnxruntime-node', threads: 1 },
  { peer: 'onnxruntime-node', threads: 2 },
];

/**
 * Run every peer (and ours) in a child Node process running this same bundle with
 * `--peer-worker <json>`, `rounds` times in turn; keep each (peer, threads, shape)'s best time.
 */
export function benchPeers(bundle: string, build: SimdBuild, quick: boolean, rounds: number, log: (s: string) => void): PeerResult[] {
  const results = new Map<string, PeerResult>();
  for (let r = 0; r < rounds; r++) {
    for (const s of PEER_SPECS) {
      const key = `${s.peer}/${s.threads}`;
      const spec: PeerSpec = { ...s, quick, build };
      const child = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', bundle, '--peer-worker', JSON.stringify(spec)],
        { encoding: 'utf8', maxBuffer: 1 << 24, timeout: 300_000 });
      const line = child.stdout?.split('\n').find((l) => l.startsWith('{"peer"'));
      let res: PeerResult;
      if (line) res = JSON.parse(line);
      else {
        const why = (child.error?.message ?? child.stderr?.trim().split('\n').filter(Boolean).slice(-1)[0]) || `exit ${child.status}`;
        res = { peer: s.peer, version: '?', threads: s.threads, ok: false, note: `process failed: ${why}`, rows: [] };
      }
      const prev = results.get(key);
      if (!prev || !prev.ok) results.set(key, res);
      else if (res.ok) {
        for (const row of res.rows) {
          const i = prev.rows.findIndex((p) => p.shape === row.shape);
          if (i < 0) prev.rows.push(row);
          else if (row.ms < prev.rows[i].ms) prev.rows[i] = row;
        }
      }
      log(`  round ${r + 1}: ${key.padEnd(22)} ${res.ok ? res.rows.map((x) => `${x.shape} ${x.ms.toFixed(2)} ms`).join(', ') : 'skipped'}${res.note ? ` (${res.note})` : ''}`);
    }
  }
  return [...results.values()];
}
