// The pool's control block: the layout shared by the calling thread (pool.ts) and the workers
// (worker.ts), and the messages that start a worker. A dispatch is a list of chunks; a chunk is a list of tasks; a task is one kernel
// export called n1 × n2 times with arguments that step by inc1 and inc2 (f64s, so byte offsets
// up to 4 GiB are exact).

/** The kernel exports a chunk may call, by index; the workers receive this list. */
export const FNS = ['matmul_nt', 'matmul_nn', 'attn_init', 'attn_block', 'attn_finish', 'probe_read', 'probe_read_pairs',
  'matvec_batch', 'vecmat_batch', 'attn_block_latent', 'matmul_nt_bf16', 'matmul_nt_f16', 'matmul_nt_q8', 'matmul_nt_q4', 'matmul_nt_q4k', 'matmul_nt_q6k',
  'qgemm_q8', 'qgemm_q4', 'gemv_rows_f32', 'gemv_rows_bf16', 'matmul_nt_q5k', 'qgemm_kq'] as const;
export const MATMUL_NT = 0, MATMUL_NN = 1, ATTN_INIT = 2, ATTN_BLOCK = 3, ATTN_FINISH = 4, PROBE_READ = 5, PROBE_READ_PAIRS = 6,
  MATVEC_BATCH = 7, VECMAT_BATCH = 8, ATTN_BLOCK_LATENT = 9, MATMUL_NT_BF16 = 10, MATMUL_NT_F16 = 11, MATMUL_NT_Q8 = 12, MATMUL_NT_Q4 = 13,
  MATMUL_NT_Q4K = 14, MATMUL_NT_Q6K = 15, QGEMM_Q8 = 16, QGEMM_Q4 = 17, GEMV_ROWS_F32 = 18, GEMV_ROWS_BF16 = 19,
  MATMUL_NT_Q5K = 20, QGEMM_KQ = 21;

// A task: call FNS[fn] n1 × n2 times, call (i, j) with args + i·inc1 + j·inc2, and argument
// `threadArg` (if ≥ 0) further + (running thread's index)·threadStride: per-thread scratch.
export const ARGS = 22;                  // the largest kernel arity (attn_block)
export const TASK = 5 + 3 * ARGS;        // fn, n1, n2, threadArg, threadStride, args, inc1, inc2 (f64s)
export const MAX_CHUNKS = 64;
export const MAX_TASKS = 192;
// Control words (Int32 indices), each on a cache line of its own.
export const GEN = 0, STOP = 1, CLAIM = 16, DONE = 32, WAITING = 33, ERR = 48;
/** Bytes after ERR's word: the message of the first trap in a worker (a length byte, then ASCII). */
export const ERR_TEXT = ERR * 4 + 4, ERR_TEXT_BYTES = 60;
export const HEADER = 256;               // bytes before the chunk table
export const CHUNKS_AT = HEADER / 8;     // f64 index: chunk c's tasks are [D[CHUNKS_AT + c], D[CHUNKS_AT + c + 1])
export const TASKS_AT = CHUNKS_AT + MAX_CHUNKS + 8;
export const CONTROL_BYTES = (TASKS_AT + MAX_TASKS * TASK) * 8;
/** Bytes of WebAssembly memory a pool of `threads` threads takes: its control block (none for one thread). */
export function poolBytes(threads: number): number {
  return threads > 1 ? CONTROL_BYTES : 0;
}
/** A worker spins this long for the next dispatch before it sleeps in Atomics.wait. */
export const SPIN_MS = 0.05;
/** The caller spins this long for workers' chunks before it sleeps (where it may). */
export const CALLER_SPIN_MS = 0.05;
/**
 * When the cores are busy with other work (other processes, or more threads than cores), a
 * worker holding a chunk may be descheduled for a whole time slice while the caller waits. A
 * dispatch whose wait outlasted the caller's own work counts as congested; when most recent ones
 * are, the pool stands aside (the caller runs everything) for this long, then tries again.
 */
export const BACKOFF_MS = 100;

/** What a worker is started with (workers.ts → worker.ts): it instantiates `module` over `memory`. */
export type StartData = {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte offset of the control block in `memory`. */
  ctl: number;
  /** The worker's thread index (the caller is 0): it offsets tasks' per-thread arguments. */
  index: number;
  /** The kernel exports a task's fn indexes (FNS). */
  fns: readonly string[];
  spinMs: number;
};
/** A worker's one message: 'ready' once it serves dispatches, or why it could not start. */
export type WorkerReply = 'ready' | { error: string };

/** Argument x of call (i, j) of the task whose arguments start at D[a]. */
export function arg(D: Float64Array, a: number, x: number, i: number, j: number): number {
  return D[a + x] + i * D[a + ARGS + x] + j * D[a + 2 * ARGS + x];
}

