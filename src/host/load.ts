// A fresh memory with the kernel module instantiated over it, and a worker pool when asked and possible.
import { MlaError, showValue } from '../errors.js';
import { Heap } from './heap.js';
import { chooseBuild, compileBuild, instantiateKernels, type KernelOptions, type Kernels, type SimdBuild } from './kernels.js';
import { ThreadPool } from './pool.js';
import { threadsAvailable } from './threads.js';

export interface LoadedKernels {
  kernels: Kernels;
  heap: Heap;
  build: SimdBuild;
  /** The worker pool, or null when the kernels run on the calling thread alone. */
  pool: ThreadPool | null;
}

function checkThreads(threads: unknown): number {
  if (threads === undefined) return 1;
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new MlaError('BAD_INPUT', `threads must be an integer from 1 to 256, got ${showValue(threads)}`);
  }
  return threads;
}

/** A fresh heap with the kernel module instantiated over it, and a worker pool when asked and possible. */
export async function loadKernels(options: KernelOptions = {}): Promise<LoadedKernels> {
  const threads = checkThreads(options.threads);
  const wantShared = threads > 1 && threadsAvailable();
  let module: WebAssembly.Module;
  let shared: boolean;
  if (options.wasmModule || options.wasmBytes) {
    module = options.wasmModule ?? await WebAssembly.compile(options.wasmBytes!);
    // A given module imports a shared memory or not, whatever was asked.
    shared = await importsSharedMemory(module);
  } else {
    const build = chooseBuild(options.simd);
    shared = wantShared;
    if (shared) {
      // A deployment without the threaded files (or an engine that rejects them) runs single-threaded.
      try { module = await compileBuild(build, true); } catch { shared = false; }
    }
    if (!shared) module = await compileBuild(build, false);
  }
  const heap = new Heap(undefined, { shared });
  const kernels = await instantiateKernels(module!, heap.memory);
  const build: SimdBuild = kernels.build_is_relaxed() ? 'relaxed' : 'simd';
  const pool = shared && wantShared ? await ThreadPool.create(module!, heap, kernels, threads) : null;
  return { kernels, heap, build, pool };
}

/** Whether a kernel module imports a shared memory (the -mt builds), found by trying a plain one. */
async function importsSharedMemory(module: WebAssembly.Module): Promise<boolean> {
  const plain = new WebAssembly.Memory({ initial: 1, maximum: 65536 });
  try {
    await WebAssembly.instantiate(module, { env: { memory: plain } });
    return false;
  } catch (e) {
    if (e instanceof WebAssembly.LinkError) return true;
    throw e;
  }
}
