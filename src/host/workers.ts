// Starting the pool's worker threads, whichever worker API the runtime has. Each worker
// instantiates the kernel module over the shared memory and then serves dispatches (pool.ts).
import { ARGS, CHUNKS_AT, CLAIM, CONTROL_BYTES, DONE, ERR, ERR_TEXT, ERR_TEXT_BYTES, GEN, HEADER, STOP, TASK, TASKS_AT, WAITING } from './protocol.js';

// The worker: plain JavaScript, the same for every runtime except how it gets its start message.
const CALL_ARGS = Array.from({ length: ARGS }, (_, x) => `D[a+${x}]+i*D[a+${ARGS + x}]+j*D[a+${2 * ARGS + x}]`).join(',');
const WORKER_BODY = `
function start(data, reply, close) {
  const { module, memory, ctl, index, fns, spinMs } = data;
  WebAssembly.instantiate(module, { env: { memory } }).then((instance) => {
    const ex = instance.exports;
    if (ex._initialize) ex._initialize();
    const F = fns.map((n) => ex[n]);
    const I = new Int32Array(memory.buffer, ctl, ${HEADER / 4});
    const D = new Float64Array(memory.buffer, ctl, ${CONTROL_BYTES / 8});
    function chunk(c) {
      const end = D[${CHUNKS_AT} + c + 1];
      for (let t = D[${CHUNKS_AT} + c]; t < end; t++) {
        const o = ${TASKS_AT} + t * ${TASK};
        const f = F[D[o]], n1 = D[o + 1], n2 = D[o + 2], ta = D[o + 3], a = o + 5;
        if (ta >= 0) D[a + ta] += index * D[o + 4];
        for (let i = 0; i < n1; i++) for (let j = 0; j < n2; j++) f(${CALL_ARGS});
        if (ta >= 0) D[a + ta] -= index * D[o + 4];
      }
    }
    let seen = Atomics.load(I, ${GEN});
    reply('ready');
    for (;;) {
      let g = Atomics.load(I, ${GEN});
      if (g === seen) {
        const t0 = performance.now();
        spin: for (;;) {
          for (let s = 0; s < 256; s++) { g = Atomics.load(I, ${GEN}); if (g !== seen) break spin; }
          if (performance.now() - t0 > spinMs) {
            Atomics.wait(I, ${GEN}, seen);
            g = Atomics.load(I, ${GEN});
            if (g !== seen) break;
          }
        }
      }
      seen = g;
      if (Atomics.load(I, ${STOP}) !== 0) break;
      for (;;) {
        const w = Atomics.add(I, ${CLAIM}, 1);
        const c = w & 0xffff;
        if (c >= w >>> 16) break;
        try { chunk(c); } catch (e) {
          if (Atomics.compareExchange(I, ${ERR}, 0, 1) === 0) {
            const text = String((e && e.message) || e).slice(0, ${ERR_TEXT_BYTES - 1});
            const B = new Uint8Array(memory.buffer, ctl + ${ERR_TEXT}, ${ERR_TEXT_BYTES});
            B[0] = text.length;
            for (let x = 0; x < text.length; x++) B[x + 1] = text.charCodeAt(x) & 0x7f;
          }
        }
        Atomics.add(I, ${DONE}, 1);
        if (Atomics.load(I, ${WAITING}) !== 0) Atomics.notify(I, ${DONE});
      }
    }
    close();
  }, (e) => reply({ error: String((e && e.message) || e) }));
}
`;
const NODE_WORKER = `${WORKER_BODY}
const { parentPort, workerData } = require('node:worker_threads');
start(workerData, (m) => parentPort.postMessage(m), () => {});
`;
const WEB_WORKER = `${WORKER_BODY}
self.onmessage = (e) => { self.onmessage = null; start(e.data, (m) => self.postMessage(m), () => self.close()); };
`;

/** A started worker, whichever API made it. */
export interface WorkerHandle {
  terminate(): void;
  /** Let the process exit while this worker lives (Node, Bun). */
  unref(): void;
  /** Resolves when the worker has stopped, saying how ('exited with code 1', 'threw: …'). */
  exited: Promise<string>;
}

export type StartData = { module: WebAssembly.Module; memory: WebAssembly.Memory; ctl: number; index: number; fns: readonly string[]; spinMs: number };

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
      w.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error(m?.error ?? 'worker failed to start'))));
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
      w.onmessage = (e) => (e.data === 'ready' ? resolve() : reject(new Error(e.data?.error ?? 'worker failed to start')));
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
