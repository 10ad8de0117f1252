// A pool worker (pool.ts): instantiates the kernel module over the shared memory, then serves
// dispatches from the control block until STOP. Not part of the library bundle: scripts/build.mjs
// bundles it, through its two entries (worker-node.ts, worker-web.ts), into a self-contained
// script whose text workers.ts starts (build/worker-source.js), so no extra file ships or loads.
import { arg, CHUNKS_AT, CLAIM, CONTROL_BYTES, DONE, ERR, ERR_TEXT, ERR_TEXT_BYTES, GEN, HEADER, STOP, TASK, TASKS_AT, WAITING,
  type StartData, type WorkerReply } from './protocol.js';

type Kernel = (...args: number[]) => void;

/** An error's message, or the thrown value as text. */
function messageOf(e: unknown): string {
  return String((e as { message?: unknown } | null | undefined)?.message || e);
}

/**
 * Serve the pool until it stops: `reply` says 'ready' (or why the module did not instantiate),
 * `close` ends the worker where the runtime wants that said (web workers).
 */
export function serve(data: StartData, reply: (m: WorkerReply) => void, close: () => void): void {
  const { module, memory, ctl, index, fns, spinMs } = data;
  // An error past instantiation (outside a kernel) is left unhandled on purpose: it ends the
  // worker, and the pool hears of it from the worker's 'error'/'exit' events.
  WebAssembly.instantiate(module, { env: { memory } }).then((instance) => {
    const ex = instance.exports as Record<string, unknown> & { _initialize?: () => void };
    if (ex._initialize) ex._initialize();
    const F = fns.map((n) => ex[n] as Kernel);
    const I = new Int32Array(memory.buffer, ctl, HEADER / 4);
    const D = new Float64Array(memory.buffer, ctl, CONTROL_BYTES / 8);
    // Chunk c's tasks, each with its per-thread argument moved to this thread's scratch and back.
    const chunk = (c: number): void => {
      const end = D[CHUNKS_AT + c + 1];
      for (let t = D[CHUNKS_AT + c]; t < end; t++) {
        const o = TASKS_AT + t * TASK;
        const f = F[D[o]], n1 = D[o + 1], n2 = D[o + 2], ta = D[o + 3], a = o + 5;
        if (ta >= 0) D[a + ta] += index * D[o + 4];
        for (let i = 0; i < n1; i++) {
          for (let j = 0; j < n2; j++) {
            f(arg(D, a, 0, i, j), arg(D, a, 1, i, j), arg(D, a, 2, i, j), arg(D, a, 3, i, j), arg(D, a, 4, i, j),
              arg(D, a, 5, i, j), arg(D, a, 6, i, j), arg(D, a, 7, i, j), arg(D, a, 8, i, j), arg(D, a, 9, i, j),
              arg(D, a, 10, i, j), arg(D, a, 11, i, j), arg(D, a, 12, i, j), arg(D, a, 13, i, j), arg(D, a, 14, i, j),
              arg(D, a, 15, i, j), arg(D, a, 16, i, j), arg(D, a, 17, i, j), arg(D, a, 18, i, j), arg(D, a, 19, i, j),
              arg(D, a, 20, i, j), arg(D, a, 21, i, j));
          }
        }
        if (ta >= 0) D[a + ta] -= index * D[o + 4];
      }
    };
    let seen = Atomics.load(I, GEN);
    reply('ready');
    for (;;) {
      // The next dispatch: spin for spinMs (it mostly follows within microseconds), then sleep.
      let g = Atomics.load(I, GEN);
      if (g === seen) {
        const t0 = performance.now();
        spin: for (;;) {
          for (let s = 0; s < 256; s++) {
            g = Atomics.load(I, GEN);
            if (g !== seen) break spin;
          }
          if (performance.now() - t0 > spinMs) {
            Atomics.wait(I, GEN, seen);
            g = Atomics.load(I, GEN);
            if (g !== seen) break;
          }
        }
      }
      seen = g;
      if (Atomics.load(I, STOP) !== 0) break;
      for (;;) {
        const w = Atomics.add(I, CLAIM, 1);
        const c = w & 0xffff;
        if (c >= w >>> 16) break;
        try {
          chunk(c);
        } catch (e) {
          // The first trap's message, for the caller to rethrow (pool.ts workerTrapText).
          if (Atomics.compareExchange(I, ERR, 0, 1) === 0) {
            const text = messageOf(e).slice(0, ERR_TEXT_BYTES - 1);
            const B = new Uint8Array(memory.buffer, ctl + ERR_TEXT, ERR_TEXT_BYTES);
            B[0] = text.length;
            for (let x = 0; x < text.length; x++) B[x + 1] = text.charCodeAt(x) & 0x7f;
          }
        }
        Atomics.add(I, DONE, 1);
        if (Atomics.load(I, WAITING) !== 0) Atomics.notify(I, DONE);
      }
    }
    close();
  }, (e: unknown) => reply({ error: messageOf(e) }));
}
