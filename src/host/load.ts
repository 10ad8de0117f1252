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

/**
 * A fresh heap with the kernel module instantiated over it, and a worker pool when asked and
 * possible. `checked`: givenKernels(options), when the caller has it already.
 */
export async function loadKernels(options: KernelOptions = {}, checked?: GivenKernels | null): Promise<LoadedKernels> {
  const threads = checkThreads(options.threads);
  const wantShared = threads > 1 && threadsAvailable();
  let module: WebAssembly.Module;
  let shared: boolean;
  const given = checked !== undefined ? checked : await givenKernels(options);
  if (given) {
    module = given.module;
    // A given module imports a shared memory or not, whatever was asked.
    shared = given.shared;
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

export interface GivenKernels { module: WebAssembly.Module; shared: boolean }

/** An export every build of the kernels has, and the first the host calls. */
const KERNEL_EXPORT = 'build_is_relaxed';

/**
 * The kernel module of the wasmModule or wasmBytes option (null when neither is given), and whether
 * it imports a shared memory. Anything else is BAD_INPUT naming the option, found before any memory
 * is made; loadModel calls it before reading the model, so a bad option fails fast.
 */
export async function givenKernels(options: KernelOptions): Promise<GivenKernels | null> {
  const { wasmModule, wasmBytes } = options;
  if (wasmModule === undefined && wasmBytes === undefined) return null;
  const what = wasmModule !== undefined ? 'wasmModule is' : 'wasmBytes are';
  const bad = (why: string) => new MlaError('BAD_INPUT', `${what} not mla-wasm's kernel module: ${why}`);
  let module: WebAssembly.Module;
  if (wasmModule !== undefined) {
    if (!(wasmModule instanceof WebAssembly.Module)) {
      throw new MlaError('BAD_INPUT', `wasmModule must be a WebAssembly.Module (the kernels, compiled), got ${showValue(wasmModule)}`);
    }
    module = wasmModule;
  } else {
    if (!(wasmBytes instanceof ArrayBuffer || ArrayBuffer.isView(wasmBytes))) {
      throw new MlaError('BAD_INPUT', `wasmBytes must be the kernel module's bytes (an ArrayBuffer or a typed array), got ${showValue(wasmBytes)}`);
    }
    try {
      module = await WebAssembly.compile(wasmBytes);
    } catch (e) {
      // Only bytes that are no WebAssembly: a runtime that forbids compiling says so as it is.
      if (e instanceof WebAssembly.CompileError) throw new MlaError('BAD_INPUT', `wasmBytes do not compile as WebAssembly: ${e.message}`);
      throw e;
    }
  }
  const imports = WebAssembly.Module.imports(module);
  if (imports.length !== 1 || imports[0].module !== 'env' || imports[0].name !== 'memory' || imports[0].kind !== 'memory') {
    throw bad(`it does not import env.memory alone (it imports ${imports.map((i) => `${i.module}.${i.name}`).join(', ') || 'nothing'})`);
  }
  if (!WebAssembly.Module.exports(module).some((e) => e.name === KERNEL_EXPORT && e.kind === 'function')) {
    throw bad(`it has no function ${KERNEL_EXPORT}`);
  }
  try {
    return { module, shared: await importsSharedMemory(module) };
  } catch (e) {
    throw bad(`it does not instantiate: ${(e as Error).message}`);
  }
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
