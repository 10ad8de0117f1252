// Threads: workers that share the kernels' WebAssembly.Memory, and the kernel calls split among them.
//
// Every worker instantiates the same compiled kernel module over the one shared memory. A dispatch
// does not post a message: the caller writes the work into a control block in that memory as a
// list of chunks (each a few kernel calls with their arguments), publishes the chunk count in a
// claim word, bumps a generation counter and wakes the workers (Atomics.notify). Then every thread,
// the caller included, claims chunks one at a time (Atomics.add on the claim word) until none is
// left, and waits until all claimed chunks are done: it spins (chunks are short), and where it may
// block (not a browser's main thread) it then sleeps in Atomics.wait until a worker notifies. Both
// matter on a busy machine, where our threads may share a core with each other or with other
// processes: a worker that the OS has not scheduled yet, or that is still waking up, takes no
// chunk and so delays nothing, and a caller that sleeps gives its core to the worker it waits for
// instead of spinning through its time slice. Between dispatches a worker spins for a moment
// (during a forward pass the next dispatch mostly follows within microseconds) and then sleeps in
// Atomics.wait: a round trip costs ~3 µs to a spinning worker and ~25 µs to a sleeping one, but a
// longer spin takes a busy machine's CPU from the thread doing the work. And when the caller keeps
// waiting for workers longer than it worked itself, the pool stands aside for a while (BACKOFF_MS).
//
// A worker that dies (its runtime ends it, or it throws outside a kernel) must not hang the caller.
// The worker's 'error'/'exit' events tell the pool, but only when the caller's thread gets back to
// its event loop; a caller already waiting in run() gives up instead when no chunk has been
// finished for `stallMs`. Either way the pool fails: it stops and terminates every worker, the
// dispatch (or the next one) throws MlaError WORKER_FAILED, and once every worker has exited the
// pool runs dispatches on the calling thread alone (Parallel then stops splitting). A chunk counts as done only once its thread
// has finished it, so a dispatch never returns with a chunk missing.
//
// Chunks keep every output element on the code path it takes in one thread, so results are
// bit-identical to one thread, whoever runs which chunk: matmul by output columns (N) in multiples
// of 24 (MATMUL_COLS), attention by queries in multiples of 4 (its query tiles), or whole items
// of a batch (heads) at a time; decode attention by segments of keys that depend on the context
// length alone, merged in a fixed order.
import { MlaError } from './errors.js';
import type { Heap } from './heap.js';
import type { Kernels } from './wasm.js';
import type { Matrix } from './weights.js';

/** The kernel exports a chunk may call, by index; the workers receive this list. */
const FNS = ['matmul_nt', 'matmul_nn', 'attn_init', 'attn_block', 'attn_finish', 'probe_read', 'probe_read_pairs',
  'matvec_batch', 'vecmat_batch'] as const;
const MATMUL_NT = 0, MATMUL_NN = 1, ATTN_INIT = 2, ATTN_BLOCK = 3, ATTN_FINISH = 4, PROBE_READ = 5, PROBE_READ_PAIRS = 6,
  MATVEC_BATCH = 7, VECMAT_BATCH = 8;
/** Parallel.read: the least bytes a chunk reads, and the block probe_read_pairs reads whole. */
const READ_CHUNK = 16 << 20, READ_BLOCK = 4 << 20;

// A task: call FNS[fn] n1 × n2 times, call (i, j) with args + i·inc1 + j·inc2, and argument
// `threadArg` (if ≥ 0) further + (running thread's index)·threadStride: per-thread scratch.
const ARGS = 22;                  // the largest kernel arity (attn_block)
const TASK = 5 + 3 * ARGS;        // fn, n1, n2, threadArg, threadStride, args, inc1, inc2 (f64s)
const MAX_CHUNKS = 64;
const MAX_TASKS = 192;
// Control words (Int32 indices), each on a cache line of its own.
const GEN = 0, STOP = 1, CLAIM = 16, DONE = 32, WAITING = 33, ERR = 48;
/** Bytes after ERR's word: the message of the first trap in a worker (a length byte, then ASCII). */
const ERR_TEXT = ERR * 4 + 4, ERR_TEXT_BYTES = 60;
const HEADER = 256;               // bytes before the chunk table
const CHUNKS_AT = HEADER / 8;     // f64 index: chunk c's tasks are [D[CHUNKS_AT + c], D[CHUNKS_AT + c + 1])
const TASKS_AT = CHUNKS_AT + MAX_CHUNKS + 8;
const CONTROL_BYTES = (TASKS_AT + MAX_TASKS * TASK) * 8;
/** Bytes of WebAssembly memory a pool of `threads` threads takes: its control block (none for one thread). */
export function poolBytes(threads: number): number {
  return threads > 1 ? CONTROL_BYTES : 0;
}
/** A worker spins this long for the next dispatch before it sleeps in Atomics.wait. */
const SPIN_MS = 0.05;
/** The caller spins this long for workers' chunks before it sleeps (where it may). */
const CALLER_SPIN_MS = 0.05;
/**
 * When the cores are busy with other work (other processes, or more threads than cores), a
 * worker holding a chunk may be descheduled for a whole time slice while the caller waits. A
 * dispatch whose wait outlasted the caller's own work counts as congested; when most recent ones
 * are, the pool stands aside (the caller runs everything) for this long, then tries again.
 */
const BACKOFF_MS = 100;

/** Argument x of call (i, j) of the task whose arguments start at D[a]. */
function arg(D: Float64Array, a: number, x: number, i: number, j: number): number {
  return D[a + x] + i * D[a + ARGS + x] + j * D[a + 2 * ARGS + x];
}

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
interface WorkerHandle {
  terminate(): void;
  /** Let the process exit while this worker lives (Node, Bun). */
  unref(): void;
  /** Resolves when the worker has stopped, saying how ('exited with code 1', 'threw: …'). */
  exited: Promise<string>;
}

type StartData = { module: WebAssembly.Module; memory: WebAssembly.Memory; ctl: number; index: number; fns: readonly string[]; spinMs: number };

type WorkerApi = 'node' | 'web';

/**
 * The worker APIs this runtime has, best first: node:worker_threads where there is a Node-compatible
 * `process` (Node, Deno 2, Bun: its workers can be unref'd, so a forgotten model does not keep the
 * process alive, and Bun ends them cleanly), then the global Worker with a Blob URL (browsers, Deno).
 */
function workerApis(): WorkerApi[] {
  const apis: WorkerApi[] = [];
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  if (p?.versions?.node) apis.push('node');
  if (typeof (globalThis as { Worker?: unknown }).Worker === 'function' &&
      typeof URL !== 'undefined' && typeof URL.createObjectURL === 'function' && typeof Blob !== 'undefined') apis.push('web');
  return apis;
}

/** A worker that has not answered by then is given up (and the pool with it). */
const START_TIMEOUT_MS = 20_000;

async function startWorker(data: StartData, api: WorkerApi): Promise<WorkerHandle> {
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

/**
 * A pool of `threads − 1` workers plus the calling thread, over one shared memory. Build a
 * dispatch with chunk() and task(), then run() it.
 */
export class ThreadPool {
  /** Threads including the caller. */
  readonly threads: number;
  /** Resolves when every worker has exited (after dispose() or a failure). */
  readonly exited: Promise<void>;
  /**
   * A dispatch gives up on the workers when none of its chunks has been finished for this long
   * (a worker that died while the caller waits cannot tell it sooner). Long enough for any chunk
   * of the largest model on a slow, busy machine: a false alarm costs the threads, not results.
   */
  stallMs = 10_000;
  private readonly workers: WorkerHandle[];
  private readonly heap: Heap;
  private readonly ctl: number;
  private readonly I: Int32Array;
  private readonly D: Float64Array;
  private readonly F: ((...args: number[]) => void)[];
  private chunks = 0;
  private tasks = 0;
  private disposed = false;
  /** Moving average of congested dispatches (0 … 1), and until when the pool stands aside. */
  private congestion = 0;
  private idleUntil = 0;
  /** Whether this thread may Atomics.wait (not a browser's main thread). */
  private readonly canBlock: boolean;
  /** Why the pool failed (a worker died or stalled), or null. */
  private failure: string | null = null;
  /** Whether a dispatch has thrown WORKER_FAILED for the failure yet. */
  private reported = false;
  /** Every worker has exited: after a failure, dispatches may then run on this thread alone. */
  private stopped = false;

  private constructor(threads: number, workers: WorkerHandle[], heap: Heap, ctl: number, kernels: Kernels) {
    this.threads = threads;
    this.workers = workers;
    this.heap = heap;
    this.ctl = ctl;
    // Views of a shared memory stay valid when it grows: made once.
    this.I = new Int32Array(heap.memory.buffer, ctl, HEADER / 4);
    this.D = new Float64Array(heap.memory.buffer, ctl, CONTROL_BYTES / 8);
    this.F = FNS.map((n) => (kernels as unknown as Record<string, (...args: number[]) => void>)[n]);
    let canBlock = true;
    try { Atomics.wait(this.I, WAITING, 1, 0); } catch { canBlock = false; } // WAITING is 0: returns at once
    this.canBlock = canBlock;
    this.exited = Promise.all(workers.map((w, i) => w.exited.then((how) => {
      if (!this.disposed) this.fail(`worker thread ${i + 1} ${how}`);
    }))).then(() => { this.stopped = true; });
  }

  /**
   * Start `threads − 1` workers running `module` over the heap's shared memory. Returns null
   * (after cleaning up) when a worker cannot be started: the caller then runs single-threaded.
   */
  static async create(module: WebAssembly.Module, heap: Heap, kernels: Kernels, threads: number): Promise<ThreadPool | null> {
    if (threads < 2 || !heap.shared) return null;
    const ctl = heap.alloc(CONTROL_BYTES, 'the thread control block');
    heap.u8(ctl, CONTROL_BYTES).fill(0);
    const data = (index: number): StartData => ({ module, memory: heap.memory, ctl, index, fns: FNS, spinMs: SPIN_MS });
    // The first worker decides the API: the first one that starts a worker at all.
    const workers: WorkerHandle[] = [];
    let api: WorkerApi | null = null;
    for (const a of workerApis()) {
      try {
        workers.push(await startWorker(data(1), a));
        api = a;
        break;
      } catch { /* try the next API */ }
    }
    if (api) {
      const started = await Promise.allSettled(Array.from({ length: threads - 2 }, (_, w) => startWorker(data(w + 2), api)));
      for (const r of started) if (r.status === 'fulfilled') workers.push(r.value);
    }
    if (workers.length < threads - 1) {
      new ThreadPool(workers.length + 1, workers, heap, ctl, kernels).dispose();
      return null;
    }
    // Only now: a pending start must keep the process alive, a running pool must not.
    for (const w of workers) w.unref();
    return new ThreadPool(threads, workers, heap, ctl, kernels);
  }

  /** Most chunks in one dispatch. */
  static readonly MAX_CHUNKS = MAX_CHUNKS;
  /** Most kernel calls in one dispatch. */
  static readonly MAX_TASKS = MAX_TASKS;

  /** False while the pool stands aside because the cores were busy (see BACKOFF_MS), and once it failed. */
  get useful(): boolean {
    // After a failure, work still comes to run() until it has reported it and the workers are gone.
    if (this.failure !== null) return !(this.reported && this.stopped);
    return this.idleUntil === 0 || performance.now() >= this.idleUntil;
  }

  /** Whether a worker died or stalled: the pool then runs on the calling thread alone. */
  get failed(): boolean {
    return this.failure !== null;
  }

  /** Start the next chunk of this dispatch: the tasks appended after this run in order, in one thread. */
  chunk(): void {
    if (this.chunks >= MAX_CHUNKS) throw new Error(`a dispatch holds at most ${MAX_CHUNKS} chunks`);
    this.D[CHUNKS_AT + this.chunks] = this.tasks;
    this.chunks++;
  }

  /**
   * Append a call of FNS[fn] to the current chunk: run n1 × n2 times, call (i, j) with
   * args + i·inc1 + j·inc2, and argument `threadArg` (when ≥ 0) + (thread index)·threadStride.
   * Returns the index in `args` of its first argument; inc1 is at +ARGS, inc2 at +2·ARGS (zeroed).
   */
  task(fn: number, n1 = 1, n2 = 1, threadArg = -1, threadStride = 0): number {
    if (this.tasks >= MAX_TASKS) throw new Error(`a dispatch holds at most ${MAX_TASKS} tasks`);
    const D = this.D;
    const o = TASKS_AT + this.tasks * TASK;
    this.tasks++;
    D[o] = fn; D[o + 1] = n1; D[o + 2] = n2; D[o + 3] = threadArg; D[o + 4] = threadStride;
    D.fill(0, o + 5 + ARGS, o + TASK);
    return o + 5;
  }

  /** The f64 view of the control block that task() indexes. */
  get args(): Float64Array { return this.D; }

  /** Run the chunks built since the last run(), on every thread; returns when all are done. */
  run(): void {
    if (this.disposed) throw new Error('the thread pool was disposed');
    const { I, D } = this;
    const count = this.chunks;
    D[CHUNKS_AT + count] = this.tasks;
    this.chunks = this.tasks = 0;
    if (count === 0) return;
    if (this.failure !== null) return this.runAlone(count);
    const t0 = performance.now();
    Atomics.store(I, DONE, 0);
    Atomics.store(I, CLAIM, count << 16);
    Atomics.add(I, GEN, 1);
    Atomics.notify(I, GEN, count - 1);
    let failed: unknown = null;
    for (;;) {
      const w = Atomics.add(I, CLAIM, 1);
      const c = w & 0xffff;
      if (c >= w >>> 16) break;
      if (!failed) {
        try { this.runChunk(c); } catch (e) { failed = e; }
      }
      Atomics.add(I, DONE, 1);
    }
    // What is left is the chunks the workers claimed, each short.
    if (Atomics.load(I, DONE) !== count) {
      const t1 = performance.now();
      if (!this.wait(count)) {
        this.fail(`no worker thread finished a chunk for ${this.stallMs} ms: one died or hangs`);
        throw this.failedError();
      }
      const t2 = performance.now();
      this.congestion = 0.75 * this.congestion + (t2 - t1 > Math.max(0.05, t1 - t0) ? 0.25 : 0);
    } else {
      this.congestion *= 0.75;
    }
    if (this.congestion > 0.5) {
      this.congestion = 0;
      this.idleUntil = performance.now() + BACKOFF_MS;
    }
    const workerFailed = Atomics.exchange(I, ERR, 0) !== 0;
    if (failed) throw failed;
    // The error a trap throws on this thread, with the worker's message.
    if (workerFailed) throw new WebAssembly.RuntimeError(`${this.workerTrapText()} (in a worker thread)`);
  }

  /**
   * Spin, then sleep where allowed (else spin on), until `count` chunks are done: true; false when
   * no chunk was finished for stallMs.
   */
  private wait(count: number): boolean {
    const I = this.I;
    const t0 = performance.now();
    for (;;) {
      for (let s = 0; s < 64; s++) if (Atomics.load(I, DONE) === count) return true;
      if (performance.now() - t0 > CALLER_SPIN_MS) break;
    }
    if (this.canBlock) Atomics.store(I, WAITING, 1);
    let ok = true, last = -1, since = 0;
    for (;;) {
      const done = Atomics.load(I, DONE);
      if (done === count) break;
      const now = performance.now();
      if (done !== last) { last = done; since = now; }
      else if (now - since > this.stallMs) { ok = false; break; }
      if (this.canBlock) Atomics.wait(I, DONE, done, 10);
      else for (let s = 0; s < 4096 && Atomics.load(I, DONE) === done; s++);
    }
    Atomics.store(I, WAITING, 0);
    return ok;
  }

  /** The message a worker left for its trap (ASCII, at most ERR_TEXT_BYTES − 1 characters). */
  private workerTrapText(): string {
    const B = new Uint8Array(this.heap.memory.buffer, this.ctl + ERR_TEXT, ERR_TEXT_BYTES);
    return String.fromCharCode(...B.subarray(1, 1 + Math.min(B[0], ERR_TEXT_BYTES - 1)));
  }

  /** Stop the workers and give up on them: the next dispatch reports it, later ones run alone. */
  private fail(why: string): void {
    if (this.failure !== null) return;
    this.failure = why;
    this.stop();
  }

  /**
   * A dispatch after a failure: WORKER_FAILED once to report it, and until every worker has exited
   * (one that was given up may still be finishing a chunk); then every chunk on this thread.
   */
  private runAlone(count: number): void {
    if (!this.reported || !this.stopped) throw this.failedError();
    for (let c = 0; c < count; c++) this.runChunk(c);
  }

  private failedError(): MlaError {
    const first = !this.reported;
    this.reported = true;
    return new MlaError('WORKER_FAILED', `${this.failure}: this call's work was abandoned` + (first
      ? '; the model goes on on one thread once the workers have stopped'
      : '; the other workers are still stopping (the model runs on one thread after they have: yield to the event loop)'));
  }

  /** No more claims; wake every worker to find STOP and terminate them. */
  private stop(): void {
    const I = this.I;
    Atomics.store(I, CLAIM, 0);
    Atomics.store(I, STOP, 1);
    Atomics.add(I, GEN, 1);
    Atomics.notify(I, GEN);
    for (const w of this.workers) w.terminate();
  }

  private runChunk(c: number): void {
    const D = this.D;
    const end = D[CHUNKS_AT + c + 1];
    for (let t = D[CHUNKS_AT + c]; t < end; t++) {
      const o = TASKS_AT + t * TASK;
      const f = this.F[D[o]], n1 = D[o + 1], n2 = D[o + 2], a = o + 5;
      // The caller is thread 0: its per-thread scratch is the task's own.
      for (let i = 0; i < n1; i++) {
        for (let j = 0; j < n2; j++) {
          f(arg(D, a, 0, i, j), arg(D, a, 1, i, j), arg(D, a, 2, i, j), arg(D, a, 3, i, j), arg(D, a, 4, i, j),
            arg(D, a, 5, i, j), arg(D, a, 6, i, j), arg(D, a, 7, i, j), arg(D, a, 8, i, j), arg(D, a, 9, i, j),
            arg(D, a, 10, i, j), arg(D, a, 11, i, j), arg(D, a, 12, i, j), arg(D, a, 13, i, j), arg(D, a, 14, i, j),
            arg(D, a, 15, i, j), arg(D, a, 16, i, j), arg(D, a, 17, i, j), arg(D, a, 18, i, j), arg(D, a, 19, i, j),
            arg(D, a, 20, i, j), arg(D, a, 21, i, j));
        }
      }
    }
  }

  /**
   * Stop and terminate the workers; the control block goes back to the heap once they have exited
   * (a worker still waking up reads it). Idempotent.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.stop();
    void this.exited.then(() => this.heap.release(this.ctl, CONTROL_BYTES));
  }
}

// ---------------------------------------------------------------------------------------------
// The kernel calls the decoder splits, with the estimate of their cost that decides into how many
// shares. Rates are rough, for this kind of machine: what matters is that a share stays well
// above the hand-off (a few µs).

/** Multiply-adds per ns: GEMM (compute-bound) and GEMV (bound by reading 4 bytes per weight). */
const GEMM_RATE = 20, GEMV_RATE = 4, ATTN_RATE = 8;
/**
 * GEMV chunks: each starts new streams, which the prefetchers take a while to follow, so a GEMV is
 * split into as few chunks as keep every thread busy (a multiple of the threads), more only where
 * each would still read GEMV_PIECE_BYTES of every panel. Measured on 2 threads (scratch,
 * 2026-11-24, median calls): decode's per-head products (4 MiB, V2-Lite) 33–36 GB/s in 8 chunks,
 * 51–56 in 2; down_proj 2048×10944 in 6 panels 70.7 in 8, 75.5 in 2; o_proj 2048×2048 69 in 8,
 * 73 in 2; a 171 MiB matrix the same in 2 to 8.
 */
const GEMV_PIECE_BYTES = 8 << 20;
/** Chunks per thread at most: enough to even out a late or slow thread, few enough to stay long. */
const CHUNKS_PER_THREAD = 4;
/**
 * matmul column chunks are multiples of this: of both builds' tile widths (assembly/matmul.ts:
 * dot tiles 4 plain, 3 relaxed; packed panels 8 plain, 12 relaxed), so no chunk edge cuts a tile
 * short, and of 4 for matvec's four-row groups.
 */
const MATMUL_COLS = 24;
/** matvec/vecmat switch to four-row streaming beyond this many floats (assembly/matmul.ts VEC_L1). */
const VEC_L1 = 4096;

/**
 * One item's attention over a long context (decode) is split by keys into segments, each with its
 * own state, merged in order at the end (flash-decoding): threads then share the keys instead of
 * each reading all of them. At most this many segments, of at least MIN_SEGMENT keys; the split
 * depends on the shape alone, never on the threads, so results stay bit-identical.
 */
const MAX_SEGMENTS = 8, MIN_SEGMENT = 256;

/** Bytes of one segment's state for nq queries of dv values: acc, m, l, and attn_block's scratch. */
function segmentBytes(k: Pick<Kernels, 'attn_scratch_bytes'>, nq: number, dv: number): number {
  return Math.ceil(((nq * dv + 2 * nq) * 4 + k.attn_scratch_bytes(nq)) / 64) * 64;
}

/** Bytes attention() needs (the `segments` buffer of Parallel) to split nq queries of dv values by keys. */
export function attnSegmentBytes(k: Pick<Kernels, 'attn_scratch_bytes'>, nq: number, dv: number): number {
  return (MAX_SEGMENTS - 1) * segmentBytes(k, nq, dv);
}

/**
 * Where to cut nq queries (`steps` runs of `step`) into `chunks` runs of steps doing equal work:
 * query r, at position qPos0 + ⌊r / qGroup⌋, reads the keys up to its position (causal), so in a
 * prefill the later queries cost more (even counts of queries gave the attention of a 128-token
 * chunk 1.7–1.8× on 2 threads). Returns chunks + 1 step indices, from 0 to steps, each chunk ≥ 1 step.
 */
export function queryCuts(chunks: number, steps: number, step: number, nq: number, qPos0: number, qGroup: number,
                   kPos0: number, n: number): number[] {
  const work = (r: number) => Math.min(n, Math.max(0, qPos0 + Math.floor(r / qGroup) - kPos0 + 1)) + 1;
  const upTo = [0]; // upTo[j]: work of steps 0 … j − 1
  for (let j = 0; j < steps; j++) {
    let w = 0;
    for (let r = j * step; r < Math.min(nq, (j + 1) * step); r++) w += work(r);
    upTo.push(upTo[j] + w);
  }
  const cuts = [0];
  for (let c = 1; c < chunks; c++) {
    let j = cuts[c - 1] + 1;
    while (j < steps - (chunks - c) && upTo[j] < upTo[steps] * c / chunks) j++;
    cuts.push(j);
  }
  cuts.push(steps);
  return cuts;
}

/** Phases of attention(): attn_init, attn_block, attn_finish (in place), any combination. */
export const INIT = 1, BLOCK = 2, FINISH = 4;

/**
 * The kernels as the decoder calls them, split across the pool's threads when the work is big
 * enough, else called directly. Holds per-thread scratch for matmul packing.
 */
export class Parallel {
  readonly k: Kernels;
  readonly pool: ThreadPool | null;
  readonly threads: number;
  /** The least work (ns, estimated) worth a chunk of its own. Tests set 0 to split everything, always. */
  minChunkNs = 20_000;
  /** The fewest keys in a segment of a split by keys. Tests lower it to split short contexts. */
  minSegment = MIN_SEGMENT;
  private readonly pack: number;
  private readonly packBytes: number;
  private readonly segments: number;
  private readonly segmentsBytes: number;

  /**
   * `pack` holds `threads` blocks of `packBytes` (matmul_pack_bytes of the largest product);
   * `segments` holds `segmentsBytes` (attnSegmentBytes of the largest split by keys), or none.
   */
  constructor(k: Kernels, pool: ThreadPool | null, pack: number, packBytes: number, segments = 0, segmentsBytes = 0) {
    this.k = k;
    this.pool = pool;
    this.threads = pool?.threads ?? 1;
    this.pack = pack;
    this.packBytes = packBytes;
    this.segments = segments;
    this.segmentsBytes = segmentsBytes;
  }

  /**
   * How many chunks for work of `ns` (estimated) made of `units` indivisible parts, `tasks` kernel
   * calls each; for a GEMV, `panelBytes` is the weight bytes of each of its panels (0 otherwise).
   */
  private chunks(ns: number, units: number, tasks = 1, panelBytes = 0): number {
    if (!this.pool || (this.minChunkNs > 0 && !this.pool.useful)) return 1;
    const byCost = this.minChunkNs > 0 ? Math.floor(ns / this.minChunkNs) : Infinity;
    const T = this.threads;
    const byBytes = this.minChunkNs > 0 && panelBytes > 0 ? Math.max(T, T * Math.floor(panelBytes / GEMV_PIECE_BYTES / T)) : Infinity;
    const most = Math.min(CHUNKS_PER_THREAD * this.threads, ThreadPool.MAX_CHUNKS, Math.floor(ThreadPool.MAX_TASKS / tasks));
    return Math.max(1, Math.min(units, byCost, byBytes, most));
  }

  /**
   * y[m, W.rows] = x[m, W.cols] · Wᵀ for a weight matrix in column panels (weights.ts Matrix):
   * panel p's product is added to the earlier ones', in order, by the thread that owns the columns.
   */
  linear(x: number, ldx: number, w: Matrix, y: number, ldy: number, m: number): void {
    this.product(true, x, ldx, w.ptr, w.cols, w.panelCols, y, ldy, m, w.cols, w.rows, 1, 0, 0, 0);
  }

  /**
   * For i < batch: C_i = A_i · B_iᵀ (nt, B in [n, k] layout) or A_i · B_i (nn, B in [k, n]),
   * A_i = a + i·aInc etc. (byte offsets), as matmul_nt / matmul_nn.
   */
  matmul(nt: boolean, a: number, lda: number, b: number, ldb: number, c: number, ldc: number,
         m: number, k: number, n: number, batch = 1, aInc = 0, bInc = 0, cInc = 0): void {
    this.product(nt, a, lda, b, ldb, k, c, ldc, m, k, n, batch, aInc, bInc, cInc);
  }

  /**
   * matmul with B in column panels of `panelCols` (nt, batch 1; panelCols = k: one panel of row
   * stride ldb). Split by whole products when there are enough of them, else by columns of C in
   * multiples of MATMUL_COLS; a chunk runs every panel of its columns.
   */
  private product(nt: boolean, a: number, lda: number, b: number, ldb: number, panelCols: number, c: number, ldc: number,
                  m: number, k: number, n: number, batch: number, aInc: number, bInc: number, cInc: number): void {
    if (m <= 0 || n <= 0 || batch <= 0) return;
    if (m === 1 && batch > 1 && panelCols >= k) {
      this.gemvBatch(nt, a, aInc, b, ldb, bInc, c, cInc, k, n, batch);
      return;
    }
    // Panel p: columns k0 … k0 + width of A, at b + n·k0 floats, row stride width.
    const panels: { k0: number; width: number; b: number; ldb: number }[] = [];
    if (panelCols >= k) panels.push({ k0: 0, width: k, b, ldb });
    else {
      for (let k0 = 0; k0 < k; k0 += panelCols) {
        const width = Math.min(panelCols, k - k0);
        panels.push({ k0, width, b: b + n * k0 * 4, ldb: width });
      }
    }
    const ns = batch * m * k * n / (m < 4 ? GEMV_RATE : GEMM_RATE);
    const byItems = batch >= 2 * this.threads;
    // vecmat picks its loop by n, so a column split must leave every chunk on the same side.
    const groups = !nt && m < 4 && n > VEC_L1 ? 1 : Math.ceil(n / MATMUL_COLS);
    const chunks = this.chunks(ns, byItems ? batch : groups, panels.length, m < 4 ? batch * Math.min(k, panelCols) * n * 4 : 0);
    if (chunks === 1) {
      const f = nt ? this.k.matmul_nt : this.k.matmul_nn;
      for (let i = 0; i < batch; i++) {
        for (const [p, pl] of panels.entries()) {
          f(a + i * aInc + pl.k0 * 4, lda, pl.b + i * bInc, pl.ldb, c + i * cInc, ldc, m, pl.width, n, this.pack, p > 0);
        }
      }
      return;
    }
    const pool = this.pool!, D = pool.args;
    const fn = nt ? MATMUL_NT : MATMUL_NN;
    for (let s = 0; s < chunks; s++) {
      pool.chunk();
      for (const [p, pl] of panels.entries()) {
        let x: number;
        if (byItems) {
          const i0 = Math.floor(batch * s / chunks), i1 = Math.floor(batch * (s + 1) / chunks);
          x = pool.task(fn, i1 - i0, 1, 9, this.packBytes);
          this.putMatmul(D, x, a + i0 * aInc + pl.k0 * 4, lda, pl.b + i0 * bInc, pl.ldb, c + i0 * cInc, ldc, m, pl.width, n, p > 0);
        } else {
          const n0 = MATMUL_COLS * Math.floor(groups * s / chunks);
          const n1 = Math.min(n, MATMUL_COLS * Math.floor(groups * (s + 1) / chunks));
          x = pool.task(fn, batch, 1, 9, this.packBytes);
          // Columns n0… of C are rows n0… of B (nt) or its columns n0… (nn).
          this.putMatmul(D, x, a + pl.k0 * 4, lda, pl.b + (nt ? n0 * pl.ldb : n0) * 4, pl.ldb, c + n0 * 4, ldc, m, pl.width, n1 - n0, p > 0);
        }
        D[x + ARGS] = aInc; D[x + ARGS + 2] = bInc; D[x + ARGS + 4] = cInc;
      }
    }
    pool.run();
  }

  /**
   * product() for one row of A and a batch (decode's per-head products): items i and i + ⌊batch/2⌋
   * go to one call of matvec_batch / vecmat_batch, which reads the pair side by side; an odd
   * batch's last item goes alone. Split by pairs, or by columns of C when there are too few.
   */
  private gemvBatch(nt: boolean, a: number, aInc: number, b: number, ldb: number, bInc: number, c: number, cInc: number,
                    k: number, n: number, batch: number): void {
    const half = batch >> 1, units = half + (batch & 1);
    const byUnits = units >= 2 * this.threads;
    const groups = !nt && n > VEC_L1 ? 1 : Math.ceil(n / MATMUL_COLS);
    const chunks = this.chunks(batch * k * n / GEMV_RATE, byUnits ? units : groups, 2, batch * k * n * 4);
    const pool = this.pool, fn = nt ? MATVEC_BATCH : VECMAT_BATCH;
    // Units u0 … u1 − 1 (the pairs, then the odd item) for columns n0 … n1 − 1 of C, which are
    // rows n0… of B (nt) or its columns n0… (nn).
    const put = (u0: number, u1: number, n0: number, n1: number) => {
      const parts: [number, number, number][] = []; // [first item, count, far]
      if (u0 < half) parts.push([u0, Math.min(u1, half) - u0, half]);
      if (u1 > half) parts.push([2 * half, 1, 0]);
      for (const [i, count, far] of parts) {
        const ai = a + i * aInc, bi = b + i * bInc + (nt ? n0 * ldb : n0) * 4, ci = c + i * cInc + n0 * 4;
        if (chunks === 1) {
          if (nt) this.k.matvec_batch(bi, ldb, bInc, ai, aInc, ci, cInc, n1 - n0, k, count, far, false);
          else this.k.vecmat_batch(ai, aInc, bi, ldb, bInc, ci, cInc, k, n1 - n0, count, far, false);
          continue;
        }
        const x = pool!.task(fn), D = pool!.args;
        const args = nt ? [bi, ldb, bInc, ai, aInc, ci, cInc, n1 - n0, k] : [ai, aInc, bi, ldb, bInc, ci, cInc, k, n1 - n0];
        for (const [j, v] of [...args, count, far, 0].entries()) D[x + j] = v;
      }
    };
    if (chunks === 1) { put(0, units, 0, n); return; }
    for (let s = 0; s < chunks; s++) {
      pool!.chunk();
      if (byUnits) put(Math.floor(units * s / chunks), Math.floor(units * (s + 1) / chunks), 0, n);
      else {
        const n0 = MATMUL_COLS * Math.floor(groups * s / chunks);
        put(0, units, n0, Math.min(n, MATMUL_COLS * Math.floor(groups * (s + 1) / chunks)));
      }
    }
    pool!.run();
  }

  /**
   * The read probes on every thread (the benchmarks' in-process bandwidth probe): [ptr, ptr + bytes)
   * in up to 64 chunks of 16 MiB or more, each read by probe_read (one stream) or probe_read_pairs
   * (two streams). Returns the bytes read.
   */
  read(ptr: number, bytes: number, pairs: boolean): number {
    const fn = pairs ? PROBE_READ_PAIRS : PROBE_READ;
    const chunks = Math.min(MAX_CHUNKS, Math.floor(bytes / READ_CHUNK));
    if (!this.pool || chunks < 2) {
      if (pairs) this.k.probe_read_pairs(ptr, bytes, 1);
      else this.k.probe_read(ptr, bytes, 1);
      return pairs ? bytes - bytes % READ_BLOCK : bytes - bytes % 128;
    }
    const size = bytes / chunks - (bytes / chunks) % READ_BLOCK;
    const pool = this.pool, D = pool.args;
    for (let c = 0; c < chunks; c++) {
      pool.chunk();
      const x = pool.task(fn);
      D[x] = ptr + c * size; D[x + 1] = size; D[x + 2] = 1;
    }
    pool.run();
    return chunks * size;
  }

  private putMatmul(D: Float64Array, x: number, a: number, lda: number, b: number, ldb: number, c: number, ldc: number,
                    m: number, k: number, n: number, acc: boolean): void {
    D[x] = a; D[x + 1] = lda; D[x + 2] = b; D[x + 3] = ldb; D[x + 4] = c; D[x + 5] = ldc;
    D[x + 6] = m; D[x + 7] = k; D[x + 8] = n; D[x + 9] = this.pack; // + thread index · packBytes
    D[x + 10] = acc ? 1 : 0;
  }

  /**
   * Attention for `count` items (heads, or groups of heads), each as attn_init / attn_block /
   * attn_finish (in place) with the kernels' arguments, per `phases`. Item i reads its queries at
   * q + i·qInc, its keys at k1 + ⌊i/perGroup⌋·k1Inc (k2 is shared), values at
   * v + ⌊i/perGroup⌋·vInc, and keeps its state at m, l + i·nq·4 and acc + i·accInc.
   * `scratch` holds attn_scratch_bytes(count·nq). Split by items; one item by keys when the
   * context is long and its state fits the segments buffer (decode), else by queries.
   */
  attention(phases: number, count: number, perGroup: number,
            q: number, qStride: number, nq: number, qPos0: number, qGroup: number, dk1: number, dk2: number,
            k1: number, k1Stride: number, k2: number, k2Stride: number, v: number, vStride: number, dv: number,
            n: number, kPos0: number, scale: number, m: number, l: number, acc: number, accStride: number, scratch: number,
            qInc = 0, k1Inc = 0, vInc = 0, accInc = 0): void {
    if (count <= 0 || nq <= 0) return;
    const ns = (phases & BLOCK ? count * nq * Math.max(n, 1) * (dk1 + dk2 + dv) : count * nq * dv) / ATTN_RATE;
    const segment = count === 1 && phases & BLOCK ? this.segmentLength(n, nq, dv) : 0;
    if (segment) {
      this.attentionByKeys(phases, segment, ns, q, qStride, nq, qPos0, qGroup, dk1, dk2, k1, k1Stride, k2, k2Stride,
        v, vStride, dv, n, kPos0, scale, m, l, acc, accStride, scratch);
      return;
    }
    // One item: split its queries in multiples of 4 (the kernel's tiles), and of qGroup when the
    // queries have more than one position, so that each chunk's positions follow from its first.
    const step = nq <= qGroup ? 4 : lcm(4, qGroup);
    const byItems = count > 1;
    const steps = Math.ceil(nq / step);
    // Split by queries, every chunk reads all the keys: one chunk per thread, not more.
    const chunks = this.chunks(ns, byItems ? count : Math.min(steps, this.threads));
    if (chunks === 1) {
      const k = this.k;
      for (let i = 0; i < count; i++) {
        const g = Math.floor(i / perGroup);
        const qi = q + i * qInc, mi = m + i * nq * 4, li = l + i * nq * 4, ai = acc + i * accInc;
        if (phases & INIT) k.attn_init(mi, li, ai, nq, dv, accStride);
        if (phases & BLOCK) {
          k.attn_block(qi, qStride, nq, qPos0, qGroup, dk1, dk2, k1 + g * k1Inc, k1Stride, k2, k2Stride,
            v + g * vInc, vStride, dv, n, kPos0, scale, mi, li, ai, accStride, scratch);
        }
        if (phases & FINISH) k.attn_finish(li, ai, accStride, nq, dv, ai, accStride);
      }
      return;
    }
    const pool = this.pool!, D = pool.args;
    const scratchPerQuery = this.k.attn_scratch_bytes(1);
    const cuts = byItems ? [] : queryCuts(chunks, steps, step, nq, qPos0, qGroup, kPos0, n);
    for (let s = 0; s < chunks; s++) {
      pool.chunk();
      if (byItems) {
        // Items [i0, i1) as runs that share a key group: whole groups in one two-level task.
        const i0 = Math.floor(count * s / chunks), i1 = Math.floor(count * (s + 1) / chunks);
        const sc = scratch + i0 * nq * scratchPerQuery;
        let i = i0;
        while (i < i1) {
          const g = Math.floor(i / perGroup);
          let groups = 1, run = Math.min(i1, (g + 1) * perGroup) - i;
          if (i % perGroup === 0 && i1 - i >= perGroup) { groups = Math.floor((i1 - i) / perGroup); run = perGroup; }
          this.putAttention(pool, D, phases, groups, run, perGroup, q + i * qInc, qStride, nq, qPos0, qGroup, dk1, dk2,
            k1 + g * k1Inc, k1Stride, k2, k2Stride, v + g * vInc, vStride, dv, n, kPos0, scale,
            m + i * nq * 4, l + i * nq * 4, acc + i * accInc, accStride, sc, qInc, k1Inc, vInc, accInc);
          i += groups * run;
        }
      } else {
        const r0 = step * cuts[s], r1 = Math.min(nq, step * cuts[s + 1]);
        this.putAttention(pool, D, phases, 1, 1, perGroup, q + r0 * qStride * 4, qStride, r1 - r0, qPos0 + Math.floor(r0 / qGroup),
          qGroup, dk1, dk2, k1, k1Stride, k2, k2Stride, v, vStride, dv, n, kPos0, scale,
          m + r0 * 4, l + r0 * 4, acc + r0 * accStride * 4, accStride, scratch + r0 * scratchPerQuery, 0, 0, 0, 0);
      }
    }
    pool.run();
  }

  /** Keys per segment to split one item's n keys into (equal shares, rounded up to 4 keys), or 0: no split. */
  private segmentLength(n: number, nq: number, dv: number): number {
    const most = Math.min(MAX_SEGMENTS, Math.floor(n / this.minSegment), 1 + Math.floor(this.segmentsBytes / segmentBytes(this.k, nq, dv)));
    return most < 2 ? 0 : 4 * Math.ceil(n / most / 4);
  }

  /**
   * One item's attention by segments of `len` keys: segment 0 in the caller's state, segment
   * i > 0 from a fresh state in the segments buffer; then merged into segment 0 in order.
   */
  private attentionByKeys(phases: number, len: number, ns: number,
                          q: number, qStride: number, nq: number, qPos0: number, qGroup: number, dk1: number, dk2: number,
                          k1: number, k1Stride: number, k2: number, k2Stride: number, v: number, vStride: number, dv: number,
                          n: number, kPos0: number, scale: number, m: number, l: number, acc: number, accStride: number, scratch: number): void {
    const k = this.k, segs = Math.ceil(n / len), bytes = segmentBytes(k, nq, dv);
    // Segment i's state: acc (stride dv), m, l, scratch.
    const at = (i: number) => {
      const base = this.segments + (i - 1) * bytes, mi = base + nq * dv * 4;
      return i === 0 ? { acc, accStride, m, l, scratch } : { acc: base, accStride: dv, m: mi, l: mi + nq * 4, scratch: mi + 2 * nq * 4 };
    };
    const chunks = this.chunks(ns, segs);
    const pool = this.pool, D = pool?.args;
    for (let c = 0; c < chunks; c++) {
      if (chunks > 1) pool!.chunk();
      for (let i = Math.floor(segs * c / chunks); i < Math.floor(segs * (c + 1) / chunks); i++) {
        const s = at(i), j0 = i * len, nj = Math.min(len, n - j0), init = i > 0 || phases & INIT;
        const k1i = k1 + j0 * k1Stride * 4, k2i = k2 + j0 * k2Stride * 4, vi = v + j0 * vStride * 4;
        if (chunks > 1) {
          this.putAttention(pool!, D!, (init ? INIT : 0) | BLOCK, 1, 1, 1, q, qStride, nq, qPos0, qGroup, dk1, dk2,
            k1i, k1Stride, k2i, k2Stride, vi, vStride, dv, nj, kPos0 + j0, scale, s.m, s.l, s.acc, s.accStride, s.scratch, 0, 0, 0, 0);
        } else {
          if (init) k.attn_init(s.m, s.l, s.acc, nq, dv, s.accStride);
          k.attn_block(q, qStride, nq, qPos0, qGroup, dk1, dk2, k1i, k1Stride, k2i, k2Stride, vi, vStride, dv,
            nj, kPos0 + j0, scale, s.m, s.l, s.acc, s.accStride, s.scratch);
        }
      }
    }
    if (chunks > 1) pool!.run();
    for (let i = 1; i < segs; i++) {
      const s = at(i);
      k.attn_merge(m, l, acc, accStride, s.m, s.l, s.acc, s.accStride, nq, dv);
    }
    if (phases & FINISH) k.attn_finish(l, acc, accStride, nq, dv, acc, accStride);
  }

  /** Tasks for `groups` × `run` items (inc1 steps a group of perGroup items, inc2 an item). */
  private putAttention(pool: ThreadPool, D: Float64Array, phases: number, groups: number, run: number, perGroup: number,
                       q: number, qStride: number, nq: number, qPos0: number, qGroup: number, dk1: number, dk2: number,
                       k1: number, k1Stride: number, k2: number, k2Stride: number, v: number, vStride: number, dv: number,
                       n: number, kPos0: number, scale: number, m: number, l: number, acc: number, accStride: number, scratch: number,
                       qInc: number, k1Inc: number, vInc: number, accInc: number): void {
    const ml = nq * 4;
    const g1 = ARGS, g2 = 2 * ARGS;
    if (phases & INIT) {
      const x = pool.task(ATTN_INIT, groups, run);
      D[x] = m; D[x + 1] = l; D[x + 2] = acc; D[x + 3] = nq; D[x + 4] = dv; D[x + 5] = accStride;
      D[x + g1] = perGroup * ml; D[x + g1 + 1] = perGroup * ml; D[x + g1 + 2] = perGroup * accInc;
      D[x + g2] = ml; D[x + g2 + 1] = ml; D[x + g2 + 2] = accInc;
    }
    if (phases & BLOCK) {
      const x = pool.task(ATTN_BLOCK, groups, run);
      D[x] = q; D[x + 1] = qStride; D[x + 2] = nq; D[x + 3] = qPos0; D[x + 4] = qGroup; D[x + 5] = dk1; D[x + 6] = dk2;
      D[x + 7] = k1; D[x + 8] = k1Stride; D[x + 9] = k2; D[x + 10] = k2Stride; D[x + 11] = v; D[x + 12] = vStride;
      D[x + 13] = dv; D[x + 14] = n; D[x + 15] = kPos0; D[x + 16] = scale; D[x + 17] = m; D[x + 18] = l;
      D[x + 19] = acc; D[x + 20] = accStride; D[x + 21] = scratch;
      D[x + g1] = perGroup * qInc; D[x + g1 + 7] = k1Inc; D[x + g1 + 11] = vInc;
      D[x + g1 + 17] = perGroup * ml; D[x + g1 + 18] = perGroup * ml; D[x + g1 + 19] = perGroup * accInc;
      D[x + g2] = qInc; D[x + g2 + 17] = ml; D[x + g2 + 18] = ml; D[x + g2 + 19] = accInc;
    }
    if (phases & FINISH) {
      const x = pool.task(ATTN_FINISH, groups, run);
      D[x] = l; D[x + 1] = acc; D[x + 2] = accStride; D[x + 3] = nq; D[x + 4] = dv; D[x + 5] = acc; D[x + 6] = accStride;
      D[x + g1] = perGroup * ml; D[x + g1 + 1] = perGroup * accInc; D[x + g1 + 5] = perGroup * accInc;
      D[x + g2] = ml; D[x + g2 + 1] = accInc; D[x + g2 + 5] = accInc;
    }
  }
}

function lcm(a: number, b: number): number {
  let x = a, y = b;
  while (y) { const r = x % y; x = y; y = r; }
  return (a / x) * b;
}
