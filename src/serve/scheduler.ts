// Runs the server's generations: at most `maxActive` at once, each in its own session; more wait
// in a queue of at most `maxQueued`, and past that a request is refused (BUSY, a 429). Work goes in
// rounds: a round advances every running generation by one token, so a long answer does not hold
// up a short one. Generations join and leave only between rounds, at token boundaries.
//
// Continuous batching: a round starts the turns of every generation already going at once; each
// asks the scheduler's stepper for its decode step, and once every turn still going waits for one,
// all those steps run as one model.stepBatch (batch-steps.ts): the weights are read once a round,
// not once a generation. Then the newcomers run their prompts and make their first tokens. The pieces each generation yields go into
// its job's buffer, and the round never waits for a client to read them: a slow reader cannot
// stall the others.
import { MlaError } from '../errors.js';
import { yieldToEventLoop, type Generation, type GenerationPiece, type GenerationStats, type Stepper } from '../generate/generate.js';
import type { BatchStep } from '../model/session.js';
import { runSteps, type AskedStep } from './batch-steps.js';

export interface SchedulerOptions {
  /** Generations running at once (each holds a session's KV cache). */
  maxActive: number;
  /** Requests waiting for a slot; past that, submit() throws BUSY. */
  maxQueued: number;
  /** One decode step for several sessions at once: the model's stepBatch. */
  stepBatch: (steps: readonly BatchStep[]) => Float32Array[];
}

/** One request's generation, as the HTTP side sees it. */
export interface Job {
  /** The pieces in order; ends with the generation, or throws what stopped it (ABORTED after cancel()). */
  pieces(): AsyncGenerator<GenerationPiece, void, undefined>;
  /** The generation's stats, once it has started (null while queued). */
  readonly stats: GenerationStats | null;
  /** Stop it: a queued job leaves the queue; a running one stops before its next token, and its session is freed. */
  cancel(): void;
}

/** Makes a job's generation: `signal` is what cancel() aborts, `step` the stepper that batches its decode steps. */
type Start = (signal: AbortSignal, step: Stepper) => Generation;

class Entry implements Job {
  readonly controller = new AbortController();
  generation: Generation | null = null;
  /** Whether it has had its first turn (run its prompt). */
  started = false;
  private readonly buffer: GenerationPiece[] = [];
  private ended = false;
  private failure: unknown = null;
  private wake: (() => void) | null = null;

  constructor(readonly start: Start, private readonly onCancel: (e: Entry) => void) {}

  get stats(): GenerationStats | null { return this.generation?.stats ?? null; }

  push(piece: GenerationPiece): void {
    this.buffer.push(piece);
    this.wake?.();
  }

  end(failure: unknown = null): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = failure;
    this.wake?.();
  }

  async *pieces(): AsyncGenerator<GenerationPiece, void, undefined> {
    for (let i = 0; ; ) {
      if (i < this.buffer.length) yield this.buffer[i++];
      else if (this.ended) {
        if (this.failure !== null) throw this.failure;
        return;
      } else await new Promise<void>((r) => { this.wake = r; });
    }
  }

  cancel(): void {
    this.controller.abort();
    this.onCancel(this);
  }
}

export class Scheduler {
  private readonly running: Entry[] = [];
  private readonly queue: Entry[] = [];
  private loop: Promise<void> | null = null;
  private closed = false;
  // Turns of this round not yet ended, and the steps asked for and not yet run.
  private turns = 0;
  private asked: AskedStep[] = [];

  constructor(private readonly o: SchedulerOptions) {}

  /** Generations running now. */
  get active(): number { return this.running.length; }

  /** Requests waiting for a slot. */
  get queued(): number { return this.queue.length; }

  /**
   * Queue a generation; `start` is called when a slot frees and must not have run anything yet.
   * BUSY when the queue is full.
   */
  submit(start: Start): Job {
    if (this.closed) throw new MlaError('DISPOSED', 'the server is shutting down');
    if (this.running.length + this.queue.length >= this.o.maxActive + this.o.maxQueued) {
      throw new MlaError('BUSY', `the server is busy: ${this.running.length} generation(s) running and ` +
        `${this.queue.length} waiting, the most it takes; try again shortly`);
    }
    const job = new Entry(start, (e) => this.dequeue(e));
    this.queue.push(job);
    // Started on a microtask: requests submitted together join the same first round.
    this.loop ??= Promise.resolve().then(() => this.run()).finally(() => { this.loop = null; });
    return job;
  }

  /** Cancel everything and wait until every generation has stopped. */
  async close(): Promise<void> {
    this.closed = true;
    for (const j of [...this.queue, ...this.running]) j.cancel();
    await this.loop;
  }

  private dequeue(e: Entry): void {
    const i = this.queue.indexOf(e);
    if (i < 0) return;
    this.queue.splice(i, 1);
    e.end(new MlaError('ABORTED', 'generation aborted'));
  }

  private async run(): Promise<void> {
    while (this.running.length || this.queue.length) {
      while (this.running.length < this.o.maxActive && this.queue.length) {
        const job = this.queue.shift()!;
        try {
          job.generation = job.start(job.controller.signal, this.step);
          this.running.push(job);
        } catch (e) {
          job.end(e);
        }
      }
      await this.round();
      // Whatever the round did, the event loop gets a turn: aborts and new requests get in.
      await yieldToEventLoop();
    }
  }

  /**
   * One token for every running generation: the turns of those already going start at once, in
   * the order they joined, and their decode steps run together; then each newcomer runs its
   * prompt, one at a time with a turn of the event loop before each, so that the first tokens
   * already made reach their clients before the next prompt holds the thread.
   */
  private async round(): Promise<void> {
    const going = this.running.filter((j) => j.started), joining = this.running.filter((j) => !j.started);
    this.turns = going.length;
    await Promise.all(going.map((job) => this.turn(job)));
    for (const job of joining) {
      await yieldToEventLoop();
      job.started = true;
      this.turns = 1;
      await this.turn(job);
    }
  }

  private async turn(job: Entry): Promise<void> {
    try {
      const r = await job.generation!.next();
      if (r.done) this.leave(job, null);
      else job.push(r.value);
    } catch (e) {
      this.leave(job, e);
    } finally {
      this.turns--;
      this.stepWhenAllAsked();
    }
  }

  /** The stepper every generation gets: its step waits for the round's batch. */
  private readonly step: Stepper = (request) => new Promise<number>((resolve, reject) => {
    this.asked.push({ request, resolve, reject });
    this.stepWhenAllAsked();
  });

  /** Once every turn still going waits for its step, run them all as one batch. */
  private stepWhenAllAsked(): void {
    if (this.asked.length === 0 || this.asked.length < this.turns) return;
    const asked = this.asked;
    this.asked = [];
    runSteps(this.o.stepBatch, asked);
  }

  private leave(job: Entry, failure: unknown): void {
    this.running.splice(this.running.indexOf(job), 1);
    job.end(failure);
  }
}
