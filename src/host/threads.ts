// Whether this runtime can run kernels on threads, and how many to use by default.
import { workerApis } from './workers.js';


/** Whether this runtime can run the pool: SharedArrayBuffer, shared WebAssembly memory and workers. */
export function threadsAvailable(): boolean {
  if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return false;
  // Pages without cross-origin isolation may still name SharedArrayBuffer but cannot share it.
  if ((globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) return false;
  if (workerApis().length === 0) return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true } as WebAssembly.MemoryDescriptor);
  } catch {
    return false;
  }
  return true;
}

/**
 * Models with fewer bytes of weights than this run on one thread unless asked otherwise: their
 * kernel calls are too short to be worth handing out. Measured on 2 cores (npm start's 35-token
 * prompt and 149 steps, fresh processes): 6.1 MiB (fortune-mla) and 18 MiB models decoded 30–40%
 * slower on 2 threads than on 1, a 52 MiB one 0–20% faster; the V2-Lite-dims bench model (187 MiB)
 * decodes 1.4–1.9× faster on 2 (npm run bench:threads, and the bench's tg64 rows).
 */
export const SMALL_MODEL_BYTES = 48 << 20;

/** The default thread count: 1 for a model under SMALL_MODEL_BYTES, else the cores this process may use, at most 4. */
export async function defaultThreads(weightBytes = Infinity): Promise<number> {
  if (weightBytes < SMALL_MODEL_BYTES) return 1;
  let cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 0;
  if (!cores && workerApis()[0] === 'node') {
    try {
      const os = await import('node:os');
      cores = os.availableParallelism?.() ?? os.cpus().length;
    } catch { /* not Node after all */ }
  }
  return Math.max(1, Math.min(cores || 1, 4));
}

