// The thread pool: workers that share the kernels' WebAssembly.Memory, and the dispatch protocol.
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
// pool runs dispatches on the calling thread alone (model/ops.ts then stops splitting). A chunk counts as done only once its thread
// has finished it, so a dispatch never returns with a chunk missing.
//
// Chunks keep every output element on the code path it takes in one thread, so results are
// bit-identical to one thread, whoever runs which chunk: matmul by output columns (N) in multiples
// of the kernels' matmul_split_cols, attention by queries in whole tiles (attn_query_tile), or whole items
// of a batch (heads) at a time; decode attention by segments of keys that depend on the context
// length alone, merged in a fixed order.
import { MlaError } from '../errors.js';
import type { Heap } from './heap.js';
import type { Kernels } from './kernels.js';
import { arg, ARGS, BACKOFF_MS, CALLER_SPIN_MS, CHUNKS_AT, CLAIM, CONTROL_BYTES, DONE, ERR, ERR_TEXT, ERR_TEXT_BYTES, FNS, GEN, HEADER,
  MAX_CHUNKS, MAX_TASKS, SPIN_MS, STOP, TASK, TASKS_AT, WAITING, type StartData } from './protocol.js';
import { startWorker, workerApis, type WorkerApi, type WorkerHandle } from './workers.js';

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
