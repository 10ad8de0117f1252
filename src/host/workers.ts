// Starting the pool's worker threads, whichever worker API the runtime has. Each worker
// instantiates the kernel module over the shared memory and then serves dispatches (pool.ts).
// The worker itself is src/host/worker.ts, a typed module; scripts/build.mjs bundles it into
// two self-contained scripts whose text this imports, so a worker starts from a string (Node's
// `eval: true`, a web Blob URL) and bundlers and edge runtimes need no separate worker file.
import { NODE_WORKER, WEB_WORKER } from '../../build/worker-source.js';
import type { StartData, WorkerReply } from './protocol.js';

/** A started worker, whichever API made it. */
export interface WorkerHandle {
  terminate(): void;
  /** Let the process exit while this worker lives (Node, Bun). */
  unref(): void;
  /** Resolves when the worker has stopped, saying how ('exited with code 1', 'threw: …'). */
  exited: Promise<string>;
}

export type WorkerApi = 'node' | 'web';

/**
 * The worker APIs this runtime has, best first: node:worker_threads where there is a Node-compatible
 * `process` (Node, Deno 2, Bun: its workers can be unref'd, so a forgotten model does not keep the
 * process alive, and Bun ends them cleanly), then the global Worker with a Blob URL (browsers, Deno).
 */
export function workerApis(): WorkerApi[] {
  const apis: WorkerApi[] = [];
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (p?.versions?.node) apis.push('node');
  if (typeof (globalThis as { Worker?: unknown }).Worker === 'function' &&
      typeof URL !== 'undefined' && typeof URL.createObjectURL === 'function' && typeof Blob !== 'undefined') apis.push('web');
  return apis;
}

/** A worker that has not answered by then is given up (and the pool with it). */
const START_TIMEOUT_MS = 20_000;

export async function startWorker(data: StartData, api: WorkerApi): Promise<WorkerHandle> {
  let handle: WorkerHandle;
  let ready: Promise<void>;
  let revoke = () => {};
  if (api === 'node') {
    const { Worker } = await import('node:worker_threads');
    const w = new Worker(NODE_WORKER, { eval: true, workerData: data });
    // A listener for good: an 'error' event nobody listens to would end the whole process.
    let error = '';
    w.on('error', (e) => { error = String(e?.message ?? e); });
    const exited = new Promise<string>((resolve) => w.once('exit', (code) => resolve(error ? `threw: ${error}` : `exited with code ${code}`)));
    ready = new Promise<void>((resolve, reject) => {
      w.once('message', (m: WorkerReply) => (m === 'ready' ? resolve() : reject(new Error(m?.error ?? 'worker failed to start'))));
      w.once('error', reject);
      w.once('exit', () => reject(new Error('worker exited before it started')));
    });
    handle = { terminate: () => { void w.terminate(); }, unref: () => w.unref(), exited };
  } else {
    const url = URL.createObjectURL(new Blob([WEB_WORKER], { type: 'text/javascript' }));
    let w: Worker;
    try {
      w = new Worker(url, { type: 'module' });
    } catch (e) {
      URL.revokeObjectURL(url);
      throw e;
    }
    // The worker has fetched (or failed to fetch) its source by the time it answers.
    revoke = () => URL.revokeObjectURL(url);
    // A web worker has no exit event: it is gone once terminated, and an error ends it here.
    let exit!: (why: string) => void;
    const exited = new Promise<string>((resolve) => { exit = resolve; });
    ready = new Promise<void>((resolve, reject) => {
      w.onmessage = (e: MessageEvent<WorkerReply>) => (e.data === 'ready' ? resolve() : reject(new Error(e.data?.error ?? 'worker failed to start')));
      w.onerror = (e) => {
        e.preventDefault?.();
        reject(new Error(e.message || 'worker failed to start'));
        w.terminate();
        exit(`threw: ${e.message || 'an error'}`);
      };
    });
    w.postMessage(data);
    handle = {
      terminate: () => { w.terminate(); exit('was terminated'); },
      unref: () => (w as unknown as { unref?: () => void }).unref?.(),
      exited,
    };
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([ready, new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('worker did not start in time')), START_TIMEOUT_MS);
    })]);
  } catch (e) {
    handle.terminate();
    throw e;
  } finally {
    clearTimeout(timer);
    revoke();
  }
  return handle;
}
